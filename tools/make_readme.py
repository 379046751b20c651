"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which cannot be installed offline)."""
import json, pathlib, re
root = pathlib.Path(__file__).resolve().parents[1]
nb = json.loads((root/'nbs/index.ipynb').read_text())
parts = []
for c in nb['cells']:
    src = ''.join(c['source'])
    if c['cell_type'] == 'markdown': parts.append(src)
    elif not src.lstrip().startswith('#| hide'): parts.append('```python\n' + src + '\n```')
text = '\n\n'.join(parts)
text = re.sub(r'^> (.*)$', r'*\1*', text, count=1, flags=re.M)
(root/'README.md').write_text('<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook -->\n\n' + text + '\n')
