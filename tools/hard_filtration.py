"""Would ImageNet-A-style adversarial filtration make `hard` separate the zoo's models? A probe, not a dataset builder.

ImageNet-A keeps the natural images a fixed ResNet-50 gets wrong. Here: render `--n` hard/test images, keep those the
`--against` model misclassifies, and print every zoo model's accuracy on all of them and on the kept ones.

    python tools/hard_filtration.py [--n 4000] [--against reference] [--models reference clip vit resnet teacher]

Models are the shipped files (`clip` zero-shot, prompt ensemble), as in the zoo table. By construction the `--against` model scores 0 on the
kept images; what matters is whether the other models spread apart there.
"""
import argparse
from robust_nb.synthetic import render
from zoo_errors import load, predict                    # each shipped file, built from its JSON record (clip zero-shot)

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=4000, help='hard/test images rendered (seed 0)')
    p.add_argument('--against', default='reference', help='the fixed model the images are filtered against')
    p.add_argument('--models', nargs='+', default=['reference', 'clip', 'vit', 'resnet', 'teacher'])
    return p.parse_args(argv)

def predictions(name, x): return predict(load(name, None, None), x)

def filtration(n:int, against:str, models) -> dict:
    "{model: (accuracy % on all n images, accuracy % on those `against` gets wrong)} and the kept count under key None."
    x, y = render('hard', n, seed=0, split='test')
    P = {m: predictions(m, x) for m in dict.fromkeys([against, *models])}
    keep = P[against] != y
    acc = lambda p, k: 100 * (p[k] == y[k]).float().mean().item()
    return {None: int(keep.sum()), **{m: (acc(P[m], slice(None)), acc(P[m], keep)) for m in models}}

if __name__ == '__main__':
    a = parse()
    r = filtration(a.n, a.against, a.models)
    print(f"kept {r.pop(None)} of {a.n} hard/test images that `{a.against}` misclassifies")
    print('| model | all | filtered |\n|---|---|---|')
    for m, (full, kept) in r.items(): print(f'| {m} | {full:.1f} | {kept:.1f} |')
    kept = [k for m, (_, k) in r.items() if m != a.against]
    print(f"spread of the filtered accuracies without `{a.against}`: {max(kept) - min(kept):.1f} points")
