"""Measure the shipped zoo classifiers side by side: accuracy on photo images of a split, the corruption mean (15 at
severity 3, or averaged over `--severities`), training-photo accuracy, and how often they err on the *same* images (a
Bayes-error check: if every model fails on the same images, more training cannot help).

    python tools/zoo_errors.py                                  # the shipped files of this checkout
    python tools/zoo_errors.py --rev da31d46                    # the files shipped at an earlier commit (git show)
    python tools/zoo_errors.py --rev da31d46 --split val teacher
    python tools/zoo_errors.py --n 1000 --per-corruption         # also: accuracy per corruption, a row each
    python tools/zoo_errors.py --n 1000 --severities 1 2 3 4 5   # ImageNet-C's convention: the mean over 5 severities

Each model is built from its JSON record's config (`embedded.MODELS[name].build`) and loaded from its safetensors file,
so earlier zoo versions need no re-training; `clip` is read zero-shot.
"""
import argparse, json, subprocess, sys, tempfile
from pathlib import Path
import torch
from robust_nb import embedded as E
from robust_nb.synthetic import render
from robust_nb.corruptions import corrupt, CORRUPTIONS

def _file(rev, name, ext, tmp:Path) -> Path:
    rel = f'robust_nb/assets/embedded/{name}.{ext}'
    if rev is None: return E.ASSETS/f'{name}.{ext}'
    out = tmp/f'{name}.{ext}'
    out.write_bytes(subprocess.run(['git', 'show', f'{rev}:{rel}'], check=True, capture_output=True).stdout)
    return out

def load(name, rev, tmp):
    rec = json.loads(_file(rev, name, 'json', tmp).read_text())
    m = E.load_weights(E.MODELS[name].build(rec['config']), _file(rev, name, 'safetensors', tmp)).float().eval()
    return E.clip_zeroshot(m) if name == 'clip' else m

@torch.no_grad()
def predict(m, x, bs=500): return torch.cat([m(x[i:i + bs]).argmax(-1) for i in range(0, len(x), bs)])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('models', nargs='*', default=['vit', 'resnet', 'teacher', 'clip'])
    p.add_argument('--rev', default=None, help='git revision whose robust_nb/assets/embedded files to load (default: this checkout)')
    p.add_argument('--split', default='test', choices=['val', 'test'])
    p.add_argument('--n', type=int, default=2000, help='images per set (seed 0)')
    p.add_argument('--per-corruption', action='store_true', help='also print each model\'s accuracy per corruption (markdown)')
    p.add_argument('--severities', type=int, nargs='+', default=[3], choices=range(1, 6), metavar='S',
                   help='corruption severities (1-5) to average over (default: 3, as the zoo records)')
    a = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    x, y = render('photo', a.n, seed=0, split=a.split)
    xt, yt = render('photo', a.n, seed=0, split='train')
    xc = {(c, s): corrupt(x, c, s, generator=torch.Generator().manual_seed(0)).clamp(0, 1) for c in CORRUPTIONS for s in a.severities}
    sev = ','.join(map(str, a.severities))
    wrong, per = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            m = load(name, a.rev, Path(tmp))
            w = predict(m, x) != y; wrong.append(w)
            acc = {k: 100 * (predict(m, v) == y).float().mean().item() for k, v in xc.items()}
            per[name] = {c: sum(acc[c, s] for s in a.severities) / len(a.severities) for c in CORRUPTIONS}
            corr = sum(per[name].values()) / 100 / len(CORRUPTIONS)
            print(f"{name:8s} photo/{a.split} {100 - 100 * w.float().mean().item():5.1f}  corruptions (severity {sev}) {100 * corr:5.1f}  "
                  f"photo/train {100 * (predict(m, xt) == yt).float().mean().item():5.1f}", flush=True)
    if len(wrong) > 1:
        W = torch.stack(wrong)
        print(f"wrong on photo/{a.split}: all {len(wrong)} models {100 * W.all(0).float().mean().item():.1f}%, "
              f"at least one {100 * W.any(0).float().mean().item():.1f}%")
    if a.per_corruption:
        print(f"\n| corruption (severity {sev}, photo/{a.split}) | " + ' | '.join(a.models) + ' |\n|---|' + '---|' * len(a.models))
        for c in CORRUPTIONS: print(f'| {c} | ' + ' | '.join(f'{per[m][c]:.1f}' for m in a.models) + ' |')

if __name__ == '__main__': main()
