"""ImageNet-P metrics and evaluation throughput: robust_nb vs the reference formulation.

1. `top5_distance` / `flip_rate` (vectorised torch) vs a per-video, per-frame loop with `scipy.stats.rankdata`
   (how hendrycks/robustness `ImageNet-P/test.py` computes them), on N videos x T frames x C classes of random logits.
   Checks both give the same numbers, prints the speed ratio.
2. `evaluate` on a fake in-memory suite: first run vs cached re-run (the re-run only fingerprints and reads JSON).
3. `evaluate` on an on-the-fly ImageNet-C-style suite at 224 px (the 15 corruptions at one severity, a torchvision
   model with random weights, one thread, no cache) vs the same work done bare: reading the batches, `corrupt` on
   each batch, and `model(x)` under `no_grad`, each timed on its own. The two are timed alternately `--reps` times
   (medians of wall-clock and of CPU time, `time.thread_time`). Prints the breakdown data / corruption / forward and
   the ratio evaluate / (data + corruption + forward): what `evaluate` adds (fingerprints, checks, metrics).

    python benchmarks/evaluate.py [--videos 200] [--frames 31] [--classes 1000] [--threads 2]
                                  [--n224 32] [--batch224 32] [--arch mobilenet_v3_small] [--severity 3] [--reps 3]
    python benchmarks/evaluate.py --only 224      # just part 3
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
    real = sys.modules.get('robust_nb.corruptions')
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
    if real is not None: sys.modules['robust_nb.corruptions'] = real
    else: del sys.modules['robust_nb.corruptions']
    print(f"evaluate, 6 shifts x 1000 images (32 px): first run {t1:.2f} s | cached re-run {t2:.3f} s | ratio {t1 / t2:.0f}x")


def _clock(f):
    t, c = time.perf_counter(), time.thread_time(); f()
    return time.perf_counter() - t, time.thread_time() - c


def bench_eval224(n, batch, arch, severity, reps):
    "evaluate on an on-the-fly -C suite at 224 px vs its parts (data, corruption, forward) timed bare, on one thread."
    import statistics as st, torchvision
    from robust_nb.corruptions import corrupt, CORRUPTIONS
    from robust_nb.core import make_generator
    from robust_nb.data import Shift, Suite
    from robust_nb.evaluate import evaluate, _batches
    from robust_nb.synthetic import render
    torch.set_num_threads(1)
    torch.empty(32_000_000, dtype=torch.uint8).fill_(0)   # glibc: few-MB temporaries from the heap (see corruptions_vs_imagecorruptions.py)
    x, y = render('photo', n, size=224, seed=0, split='test')
    y = y % 10

    class Mem(torch.utils.data.Dataset):
        def __len__(s): return len(y)
        def __getitem__(s, i): return x[i], int(y[i])
        def tensors(s): return x, y
        def __repr__(s): return f"Mem224({len(y)})"
    ds = Mem()
    shifts = [Shift(f'{c}-{severity}', ds, 'corruption', c, severity, on_the_fly=True) for c in CORRUPTIONS]
    suite = Suite('bench224', 10, list('abcdefghij'), shifts)
    model = getattr(torchvision.models, arch)(num_classes=10).eval()

    def run_eval(): evaluate(model, suite, batch_size=batch, cache=False, progress=False, baseline=None)
    parts = {'data': [], 'corruption': [], 'forward': []}
    def run_bare():
        acc = {k: [0., 0.] for k in parts}
        for s in shifts:
            def data(): s_batches.extend(_batches(ds, batch))
            s_batches = []; t = _clock(data); acc['data'][0] += t[0]; acc['data'][1] += t[1]
            xs = []
            for b, (xb, _) in enumerate(s_batches):
                t = _clock(lambda: xs.append(corrupt(xb.float(), s.corruption, s.severity, make_generator(b))))
                acc['corruption'][0] += t[0]; acc['corruption'][1] += t[1]
            with torch.no_grad():
                for xb in xs:
                    t = _clock(lambda: model(xb)); acc['forward'][0] += t[0]; acc['forward'][1] += t[1]
        for k in parts: parts[k].append(acc[k])
    run_eval(); run_bare()                                                    # warm-up (caches, first-call costs)
    for k in parts: parts[k].clear()
    ev = []
    for _ in range(reps): ev.append(_clock(run_eval)); run_bare()
    N = n * len(shifts)
    med = lambda v, i: st.median(t[i] for t in v) / N * 1e3                    # ms/img
    E = [med(ev, i) for i in (0, 1)]; P = {k: [med(v, i) for i in (0, 1)] for k, v in parts.items()}
    bare = [sum(P[k][i] for k in P) for i in (0, 1)]
    print(f"evaluate at 224 px, {arch} (random weights), {len(shifts)} on-the-fly corruptions at severity {severity}, "
          f"{n} images each, batch {batch}, 1 thread, {reps} reps, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for k, v in P.items(): print(f"  {k:10s} {v[0]:8.3f} ms/img wall {v[1]:8.3f} ms/img cpu")
    print(f"  {'bare sum':10s} {bare[0]:8.3f} ms/img wall {bare[1]:8.3f} ms/img cpu")
    print(f"  {'evaluate':10s} {E[0]:8.3f} ms/img wall {E[1]:8.3f} ms/img cpu")
    print(f"  ratio evaluate / (data + corruption + forward): {E[0] / bare[0]:.3f} (wall), {E[1] / bare[1]:.3f} (cpu)")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--videos', type=int, default=200); p.add_argument('--frames', type=int, default=31)
    p.add_argument('--classes', type=int, default=1000); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--n224', type=int, default=32); p.add_argument('--batch224', type=int, default=32)
    p.add_argument('--arch', default='mobilenet_v3_small'); p.add_argument('--severity', type=int, default=3)
    p.add_argument('--reps', type=int, default=3)
    p.add_argument('--only', choices=['p', 'eval', '224'], default=None, help='run one part only')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.only in (None, 'p'): bench_p(a.videos, a.frames, a.classes)
    if a.only in (None, 'eval'): bench_eval()
    if a.only in (None, '224'): bench_eval224(a.n224, a.batch224, a.arch, a.severity, a.reps)
