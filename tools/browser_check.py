"""Real-browser check: JupyterLab on localhost + headless Chromium (Playwright) runs a notebook, drives a widget, screenshots.

    python tools/browser_check.py [--nb nbs/tutorials/quickstart.ipynb] [--out browser_check.png]

Needs Debian's `chromium` (/usr/bin/chromium) and `pip install playwright` (Playwright's own browser download is not
needed: we pass `executable_path`). Not part of CI (it takes minutes); run it by hand or with `pytest -m browser`.
"""
import argparse, os, socket, subprocess, sys, time, urllib.request
from pathlib import Path

CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def start_lab(root:Path, port:int):
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', f'--port={port}', '--ip=127.0.0.1', '--allow-root',
           '--ServerApp.token=', '--ServerApp.password=', f'--ServerApp.root_dir={root}',
           '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    for _ in range(120):
        try: urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status', timeout=1); return proc
        except Exception: time.sleep(0.5)
    proc.kill(); raise RuntimeError("JupyterLab did not start within 60 s")

def check(nb:str, out:str, timeout_s:int=900, chromium:str='/usr/bin/chromium'):
    from playwright.sync_api import sync_playwright
    root = Path(__file__).resolve().parents[1]
    if not (root/nb).exists(): raise FileNotFoundError(f"{root/nb} does not exist")
    port = _free_port(); lab = start_lab(root, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            page.goto(f'http://127.0.0.1:{port}/lab/tree/{nb}', timeout=120_000)
            page.wait_for_selector('.jp-Notebook', timeout=120_000)
            page.wait_for_timeout(3000)
            for label in ('Select', 'No'):                                   # kernel dialog / news toast, if any
                btn = page.get_by_role('button', name=label, exact=True)
                if btn.count(): btn.first.click()
            page.wait_for_function("document.body.innerText.includes('Idle')", timeout=120_000)  # kernel started
            page.get_by_role('menuitem', name='Run', exact=True).click()
            page.get_by_text('Run All Cells', exact=True).click()
            n_code = page.locator('.jp-CodeCell').count()
            page.wait_for_function('''n => {
                const ps = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent);
                return ps.length == n && ps.every(t => /\\[\\d+\\]/.test(t)); }''', arg=n_code, timeout=timeout_s * 1000)
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"] >> text=Traceback')
            if errors.count(): raise RuntimeError(f"the notebook raised: {errors.first.inner_text()[:2000]}")
            # interact with the first ipywidgets dropdown: pick its last option and wait for the plot to redraw
            sel = page.locator('.jupyter-widgets select').first
            try: sel.wait_for(timeout=60_000)
            except Exception: page.screenshot(path=out, full_page=True); raise
            sel.scroll_into_view_if_needed()
            n_opt = sel.locator('option').count()
            sel.select_option(index=n_opt - 1)              # by index: option labels may carry padding
            page.wait_for_timeout(2000)
            page.screenshot(path=out, full_page=False)
            plots = page.locator('.js-plotly-plot').count()
            browser.close()
        print(f"ran {nb} in JupyterLab, selected option {n_opt} of {n_opt} in a widget, {plots} plotly plots on the page; screenshot: {out}")
        return out
    finally:
        lab.terminate()                    # stops the server and the kernels it started
        try: lab.wait(timeout=30)
        except subprocess.TimeoutExpired: lab.kill()

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--nb', default='nbs/tutorials/quickstart.ipynb')
    ap.add_argument('--out', default='browser_check.png')
    ap.add_argument('--timeout', type=int, default=900)
    a = ap.parse_args()
    check(a.nb, a.out, a.timeout)
