"""Drop notebook metadata that nbdev_clean keeps but docs do not need (ipywidgets state, jupytext headers).

Run after executing a notebook to store its outputs:  python tools/strip_nb.py nbs/NN_name.ipynb && nbdev_clean
"""
import json, sys
for fn in sys.argv[1:]:
    nb = json.load(open(fn))
    for k in ('widgets', 'jupytext'): nb['metadata'].pop(k, None)
    with open(fn, 'w') as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write('\n')
