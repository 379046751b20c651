"""Diagnostic for issue 14: can the tuned blocks of the embedded CLIP become robust at all, with the image trunk frozen?

An *oracle* APT: the same tuned blocks as `multihead_table.py`, trained with cross-entropy on photo/train images each
corrupted by one of the 15 **test** corruptions at severity 3 (half the rows; the other half clean). This uses the test
corruption types on purpose, so it is not a method and never a table row: it bounds what any distillation into those
blocks could reach. Compared with the untuned student, ordinary APT on AugMix/Noise2Net data and the robust teacher.

    python benchmarks/multihead_ceiling.py --blocks 2 4 --n-tune 3000 --epochs 10 --seed 0
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
import multihead_table as T
from robust_nb.synthetic import render
from robust_nb.corruptions import CORRUPTIONS, corrupt
from robust_nb.multihead import tuning_set
from robust_nb.baselines import apt

def oracle_data(n, seed, severity=3):
    "n photo/train images; half (a random half) each corrupted by a random one of the 15 test corruptions at `severity`."
    x, y = render('photo', n, size=32, seed=seed + 1, split='train')
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(CORRUPTIONS), (n,), generator=g); keep = torch.rand(n, generator=g) < .5
    for i, c in enumerate(CORRUPTIONS):
        m = (which == i) & ~keep
        if m.any(): x[m] = corrupt(x[m], c, severity, generator=torch.Generator().manual_seed(seed * 100 + i))
    return x, y

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--blocks', type=int, nargs='+', default=[2, 4]); p.add_argument('--n-tune', type=int, default=3000)
    p.add_argument('--epochs', type=int, default=10); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--n-eval', type=int, default=250); p.add_argument('--threads', type=int, default=1)
    a = p.parse_args(argv); torch.set_num_threads(a.threads)
    student, teacher = T.load_models('clip')
    sets = T.eval_sets(a.n_eval, 3)
    def row(name, m):
        acc = {d: T._acc(T._batched(m, x), y) for d, (x, y, _) in sets.items()}
        print(f"| {name} | {acc['clean']:.1f} | {np.mean([acc[d] for d in T.NATURAL]):.1f} | {np.mean([acc[c] for c in CORRUPTIONS]):.1f} |", flush=True)
    print('| model | clean | nat. avg | corr. mean |\n|---|---|---|---|')
    row('student (zero-shot, untuned)', student); row('teacher (small, robust)', teacher)
    xo, yo = oracle_data(a.n_tune, a.seed)
    ts = tuning_set(*render('photo', a.n_tune, size=32, seed=a.seed + 1, split='train'), a=0.5, seed=a.seed)
    for b in a.blocks:
        kw = dict(blocks=b, epochs=a.epochs, batch_size=64, lr=1e-3, seed=a.seed, progress=False)
        row(f'APT, D^a (AugMix/Noise2Net), blocks={b}', apt(student, (ts.x, ts.y), **kw).model)
        row(f'oracle APT, test corruptions, blocks={b}', apt(student, (xo, yo), **kw).model)

if __name__ == '__main__': main()
