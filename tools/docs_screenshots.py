"""Static-docs browser check: render doc pages to HTML with nbconvert, open each in headless Chromium, screenshot it,
and check that its figures appear.

    python tools/docs_screenshots.py [--html-dir /tmp/robust_nb_docs] [--out nbs/tutorials/screenshots] [NB ...]

Default pages: every tutorial (nbs/tutorials/*.ipynb) plus nbs/index, results and reliability. Quarto (what the docs site
uses) cannot be installed here, so each notebook goes through nbconvert after the nbdev directives the site honours are
applied (`#| hide` drops a cell, `#| echo: false` its input, `#| output: false` its outputs; directive lines are
stripped). Plotly figures are saved by the notebooks with the `notebook_connected` renderer, which fetches plotly.js from
a CDN; this machine has no network, so the page gets the plotly.js bundled with the `plotly` package inline instead (the
site loads the same file from the CDN). Needs Debian's `chromium` (/usr/bin/chromium) and Pillow.

For each page it prints: stored outputs, plotly figures in the HTML, plotly figures drawn by the browser (counted from
Chromium's DOM dump), inline images, widget outputs and their static fallbacks, and the screenshot's size.
"""
import argparse, io, json, re, subprocess, sys
from pathlib import Path
import nbformat
from nbconvert import HTMLExporter
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync', '--virtual-time-budget=8000']
_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')

def default_pages() -> list:
    return sorted(ROOT.glob('nbs/tutorials/*.ipynb')) + [ROOT/'nbs'/f'{n}.ipynb' for n in ('index', 'results', 'reliability')]

def directives(src:str) -> dict:
    "nbdev `#| key: value` directives at the top of a cell (`#| hide` -> {'hide': ''})."
    out = {}
    for line in src.splitlines():
        if not (m := _DIRECTIVE.match(line)): break
        out[m[1]] = m[2].lower()
    return out

def process(nb) -> nbformat.NotebookNode:
    "Apply the nbdev directives the docs site honours, in place; return `nb`."
    cells = []
    for c in nb.cells:
        if c.cell_type != 'code': cells.append(c); continue
        d = directives(c.source)
        if 'hide' in d or d.get('include') == 'false': continue
        c.source = '\n'.join(l for l in c.source.splitlines() if not _DIRECTIVE.match(l)).strip('\n')
        if d.get('echo') == 'false': c.metadata['transient'] = {'remove_source': True}
        if d.get('output') == 'false': c.outputs = []
        cells.append(c)
    nb.cells = cells
    return nb

def plotly_js() -> str:
    import plotly
    return (Path(plotly.__file__).parent/'package_data'/'plotly.min.js').read_text()

def render(nb_path:Path, html_dir:Path) -> tuple:
    "HTML file of `nb_path` (nbdev directives applied, plotly.js inline) and the page's counts."
    nb = process(nbformat.read(nb_path, as_version=4))
    outs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    mimes = [k for o in outs for k in o.get('data', {})]
    html, _ = HTMLExporter(template_name='lab').from_notebook_node(nb)
    # notebook_connected's loader asks require.js for plotly from the CDN: serve it inline instead (no network here)
    html = html.replace('</head>', f'<script type="text/javascript">{plotly_js()}</script>\n</head>', 1)
    out = html_dir/f'{nb_path.stem}.html'; out.write_text(html)
    stats = dict(outputs=len(outs), plotly_outputs=mimes.count('application/vnd.plotly.v1+json'),
                 plotly_divs=html.count('class="plotly-graph-div"'), images=html.count('<img '),
                 widgets=mimes.count('application/vnd.jupyter.widget-view+json'))
    # a widget output without a live kernel shows its text/html or text/plain fallback
    stats['widget_fallbacks'] = sum(1 for o in outs if 'application/vnd.jupyter.widget-view+json' in o.get('data', {})
                                    and ({'text/html', 'text/plain', 'image/png'} & set(o['data'])))
    return out, stats

def screenshot(html:Path, png:Path, width:int=1280, height:int=4800, scale:float=0.5, max_kb:int=300,
               chromium:str='/usr/bin/chromium') -> dict:
    "Screenshot `html` in headless Chromium (width x height), downscaled by `scale` and quantised to stay under `max_kb`."
    raw = png.with_suffix('.raw.png')
    subprocess.run([chromium, *CHROMIUM, f'--window-size={width},{height}', f'--screenshot={raw}', html.as_uri()],
                   check=True, capture_output=True, timeout=180)
    dom = subprocess.run([chromium, *CHROMIUM, '--dump-dom', html.as_uri()], check=True, capture_output=True, text=True,
                         timeout=180).stdout
    im = Image.open(raw).convert('RGB'); raw.unlink()
    im = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS)
    for colours in (256, 64, 32, 16):
        buf = io.BytesIO(); im.quantize(colours).save(buf, 'PNG', optimize=True)
        if buf.tell() <= max_kb * 1024: break
    png.write_bytes(buf.getvalue())
    return dict(drawn_plots=dom.count('plot-container plotly'), kb=round(png.stat().st_size / 1024))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('pages', nargs='*', type=Path, help='notebooks (default: the tutorials, index, results, reliability)')
    p.add_argument('--html-dir', type=Path, default=Path('/tmp/robust_nb_docs'), help='where the HTML pages go')
    p.add_argument('--out', type=Path, default=ROOT/'nbs'/'tutorials'/'screenshots', help='where the PNG screenshots go')
    a = p.parse_args(argv)
    a.html_dir.mkdir(parents=True, exist_ok=True); a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for nb in a.pages or default_pages():
        html, stats = render(nb, a.html_dir)
        stats |= screenshot(html, a.out/f'{nb.stem}.png')
        rows.append(dict(page=str(nb.relative_to(ROOT) if nb.is_absolute() else nb), html=str(html), **stats))
        print(json.dumps(rows[-1]), flush=True)
    return rows

if __name__ == '__main__': main()
