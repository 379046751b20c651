"""Drop notebook metadata that nbdev_clean keeps but docs do not need (ipywidgets state, jupytext headers),
and give notebooks made by jupytext the kernelspec JupyterLab needs to start a kernel without asking.

Run after executing a notebook to store its outputs:  python tools/strip_nb.py nbs/NN_name.ipynb && nbdev_clean
"""
import json, sys
for fn in sys.argv[1:]:
    nb = json.load(open(fn))
    for k in ('widgets', 'jupytext'): nb['metadata'].pop(k, None)
    for c in nb['cells']:   # cells nbdev never runs keep no outputs (a widget view without a kernel renders empty)
        if c['cell_type'] == 'code' and '#| eval: false' in ''.join(c['source']): c['outputs'] = []
    nb['metadata'].setdefault('kernelspec', {'display_name': 'python3', 'language': 'python', 'name': 'python3'})
    with open(fn, 'w') as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write('\n')
