"""Speed of `robust_nb.corruptions.corrupt` vs the reference `imagecorruptions` 1.1.2 on the same images, per corruption.

    python benchmarks/corruptions_vs_imagecorruptions.py [--n 8] [--size 224] [--batch 8] [--reps 3] [--names a,b]
                                                          [--device cuda] [--no-ref]

Images: `robust_nb.synthetic.render('photo', n, size)`. Both sides run on one thread (`torch.set_num_threads(1)`,
OpenCV with one thread). For every corruption and severity 1-5 the reference and ours are timed alternately `--reps`
times, so that both see the same machine load, and we keep the medians of wall-clock time and of CPU time
(`time.thread_time`, which leaves out the time the process waits for a core on a shared machine). Before timing,
every corruption runs once at each severity on the whole batch (ours caches kernels, frost textures, FFT plans), and
one 32 MB tensor is allocated and freed, so that glibc serves few-MB temporaries from its heap as it does in any
process that has freed such a tensor (without it, fresh zeroed pages cost both sides up to 2x, whichever runs first).

Headline: the geometric mean over the corruptions of the per-corruption speed-up (reference ms/img over ours, mean
over severities 1-5), on CPU time and on wall time; every corruption is listed. Secondary: the whole-suite ratio
(sum of all times), which glass blur (~100x) dominates. The reference needs the dev-only shim in
tests/_imagecorruptions_shim.py (pip install imagecorruptions==1.1.2 scikit-image opencv-python-headless Pillow).
"""
import argparse, math, os, statistics as st, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
from robust_nb.corruptions import corrupt, CORRUPTIONS
from robust_nb.core import make_generator
from robust_nb.synthetic import render

def warm_allocator(nbytes:int=32_000_000):
    "Allocate and free one `nbytes` block: glibc's dynamic mmap threshold rises to it (32 MiB at most)."
    torch.empty(nbytes, dtype=torch.uint8).fill_(0)

def _clock(f, sync=lambda: None):
    t, c = time.perf_counter(), time.thread_time(); f(); sync()
    return time.perf_counter() - t, time.thread_time() - c

def gmean(v): return math.exp(sum(map(math.log, v)) / len(v))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=8); p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=8); p.add_argument('--reps', type=int, default=3)
    p.add_argument('--device', default='cpu', help='also time ours on this device (e.g. cuda)')
    p.add_argument('--names', default=None, help='comma-separated corruptions (default: the 15)')
    p.add_argument('--no-ref', action='store_true', help='time ours only (e.g. on a GPU machine without the reference)')
    a = p.parse_args()
    names = a.names.split(',') if a.names else list(CORRUPTIONS)
    torch.set_num_threads(1); warm_allocator()
    try:
        import cv2; cv2.setNumThreads(1)
    except ImportError: pass
    S = None
    if not a.no_ref:
        import _imagecorruptions_shim as S
    x, _ = render('photo', a.n, size=a.size, seed=0, split='test')
    dev = torch.device(a.device); xd = x.to(dev)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == 'cuda' else (lambda: None)
    print(f"torch {torch.__version__}, 1 thread, n={a.n} size={a.size} batch={a.batch} reps={a.reps}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores", flush=True)
    def ours(xx, n, sev, g):
        for xb in xx.split(a.batch): corrupt(xb, n, sev, g)
    rows = []
    for n in names:
        T = {k: [[] for _ in range(5)] for k in ('ref', 'ours', 'dev')}
        for sev in range(1, 6):                                               # warm-up: caches, first-call costs
            if S: S.reference_corrupt(x[:2], n, sev)
            ours(x, n, sev, make_generator(0))
            if dev.type != 'cpu': ours(xd, n, sev, make_generator(0, dev)); sync()
        for r in range(a.reps):
            for s in range(5):
                if S: T['ref'][s].append(_clock(lambda: S.reference_corrupt(x, n, s + 1, seed=r)))
                g = make_generator(r)
                T['ours'][s].append(_clock(lambda: ours(x, n, s + 1, g)))
                if dev.type != 'cpu':
                    gd = make_generator(r, dev)
                    T['dev'][s].append(_clock(lambda: ours(xd, n, s + 1, gd), sync))
        # ms/img: mean over severities of the median over reps, [wall, cpu]
        row = {k: [sum(st.median(t[i] for t in v[s]) for s in range(5)) / 5 / a.n * 1e3 for i in (0, 1)]
               for k, v in T.items() if v[0]}
        rows.append((n, row))
        line = f"{n:18s} ours {row['ours'][0]:7.2f} ms/img wall {row['ours'][1]:7.2f} cpu"
        if S: line += (f" | ref {row['ref'][0]:8.2f} wall {row['ref'][1]:8.2f} cpu | speed-up "
                       f"{row['ref'][0] / row['ours'][0]:6.1f}x wall {row['ref'][1] / row['ours'][1]:6.1f}x cpu")
        if 'dev' in row: line += f" | {a.device} {row['dev'][0]:7.3f} ms/img, {row['ours'][0] / row['dev'][0]:6.1f}x vs cpu"
        print(line, flush=True)
    print(f"\n| corruption | ref ms/img (CPU time) | ours ms/img (CPU time) | speed-up (CPU) | speed-up (wall) |"
          + (f" ours on {a.device} ms/img |" if dev.type != 'cpu' else ''))
    print('|---|---|---|---|---|' + ('---|' if dev.type != 'cpu' else ''))
    for n, r in rows:
        ref = r.get('ref')
        print(f"| {n} | {ref[1]:.2f} | {r['ours'][1]:.2f} | {ref[1] / r['ours'][1]:.1f}× | {ref[0] / r['ours'][0]:.1f}× |" if ref
              else f"| {n} | - | {r['ours'][1]:.2f} | - | - |", end='')
        print(f" {r['dev'][0]:.3f} |" if 'dev' in r else '')
    if S:
        sp = {i: [r['ref'][i] / r['ours'][i] for _, r in rows] for i in (0, 1)}
        tot = {i: sum(r['ref'][i] for _, r in rows) / sum(r['ours'][i] for _, r in rows) for i in (0, 1)}
        print(f"\nHEADLINE geometric mean of the {len(rows)} per-corruption speed-ups: {gmean(sp[1]):.2f}x (CPU time), "
              f"{gmean(sp[0]):.2f}x (wall); slowest {min(sp[1]):.2f}x ({rows[sp[1].index(min(sp[1]))][0]}, CPU time)")
        print(f"secondary: whole-suite ratio (sum of times) {tot[1]:.1f}x (CPU time), {tot[0]:.1f}x (wall)")
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")

if __name__ == '__main__': main()
