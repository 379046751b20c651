"""ImageNet-P metrics and evaluation throughput: robust_nb vs the reference formulation.

1. `top5_distance` / `flip_rate` (vectorised torch) vs a per-video, per-frame loop with `scipy.stats.rankdata`
   (how hendrycks/robustness `ImageNet-P/test.py` computes them), on N videos x T frames x C classes of random logits.
   Checks both give the same numbers, prints the speed ratio.
2. `evaluate` on a fake in-memory suite: first run vs cached re-run (the re-run only fingerprints and reads JSON).

    python benchmarks/evaluate.py [--videos 200] [--frames 31] [--classes 1000] [--threads 2]
"""
import argparse, os, sys, tempfile, time, types
import numpy as np
import torch
from scipy.stats import rankdata


def loop_metrics(logits, noise, stride):
    "Reference loops: argmax + ordinal ranks per frame, then per-video comparisons."
    fps, t5s = [], []
    for vid in logits.numpy():
        preds = vid.argmax(1)
        ranks = [rankdata(-f, method='ordinal') for f in vid]
        pairs = [(0, t) for t in range(1, len(vid))] if noise else [(t, t + stride) for t in range(len(vid) - stride)]
        fps.append(np.mean([preds[a] != preds[b] for a, b in pairs]))
        ds = []
        for a, b in pairs:
            inv = np.argsort(ranks[a])                 # classes in rank order of frame a
            sigma = ranks[b][inv][:5]                  # their ranks in frame b
            ds.append(np.abs(np.minimum(sigma, 6) - np.arange(1, 6)).sum())
        t5s.append(np.mean(ds))
    return float(np.mean(fps)), float(np.mean(t5s))


def bench_p(n, T, C):
    from robust_nb.metrics import flip_rate, top5_distance
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 1, C, generator=g) * 3 + torch.randn(n, T, C, generator=g)
    for noise, stride in [(True, 1), (False, 1)]:
        t0 = time.perf_counter(); ref = loop_metrics(logits, noise, stride); t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = (flip_rate(logits, noise=noise, difficulty=stride), top5_distance(logits, noise=noise, difficulty=stride))
        t_us = time.perf_counter() - t0
        assert abs(ours[0] - ref[0]) < 1e-9 and abs(ours[1] - ref[1]) < 1e-6, (ours, ref)
        print(f"ImageNet-P metrics, {n} videos x {T} frames x {C} classes, noise={noise}: loop {t_ref:6.2f} s | "
              f"robust_nb {t_us:6.3f} s | ratio {t_ref / t_us:6.1f}x | FP {ours[0]:.4f} T5D {ours[1]:.4f} (equal)")


def bench_eval():
    from robust_nb.data import Shift, Suite
    from robust_nb.evaluate import evaluate
    mod = types.ModuleType('robust_nb.corruptions')
    mod.corrupt = lambda x, name, severity, generator=None: (x + .05 * severity * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    sys.modules['robust_nb.corruptions'] = mod

    class Mem(torch.utils.data.Dataset):
        def __init__(s, n): s.x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n)); s.y = torch.arange(n) % 10
        def __len__(s): return len(s.y)
        def __getitem__(s, i): return s.x[i], int(s.y[i])
        def tensors(s): return s.x, s.y
        def __repr__(s): return f"Mem({len(s.y)})"
    ds = Mem(1000)
    suite = Suite('bench', 10, list('abcdefghij'), [Shift('clean', ds, 'clean')] +
                  [Shift(f'noise-{s}', ds, 'corruption', 'gaussian_noise', s, on_the_fly=True) for s in range(1, 6)])
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(16, 10))
    with tempfile.TemporaryDirectory() as d:
        os.environ['ROBUST_NB_CACHE'] = d; os.environ['ROBUST_NB_NO_PROGRESS'] = '1'
        t0 = time.perf_counter(); evaluate(model, suite, baseline=None); t1 = time.perf_counter() - t0
        t0 = time.perf_counter(); evaluate(model, suite, baseline=None); t2 = time.perf_counter() - t0
    print(f"evaluate, 6 shifts x 1000 images (32 px): first run {t1:.2f} s | cached re-run {t2:.3f} s | ratio {t1 / t2:.0f}x")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--videos', type=int, default=200); p.add_argument('--frames', type=int, default=31)
    p.add_argument('--classes', type=int, default=1000); p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    bench_p(a.videos, a.frames, a.classes)
    bench_eval()
