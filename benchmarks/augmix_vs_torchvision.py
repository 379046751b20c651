"""Throughput of robust_nb's batched `augmix` vs `torchvision.transforms.AugMix` applied image by image.

Both get uint8 images (torchvision: [3,H,W] one at a time; ours: [B,3,H,W]; `--float-input` converts ours to float
inside the timed region, as older versions of `augmix` needed),
the same nine ops (`all_ops=False`), severity 3, width 3, random depth. The two are timed alternately, `--reps` times,
so that both see the same machine load; we report medians of wall-clock and of CPU time (`time.thread_time`, which
excludes the time the process waits for a core on a shared machine) and the ratio torchvision / ours (> 1: we are faster).
Before timing, one 32 MB tensor is allocated and freed: glibc then serves blocks up to 32 MB from its heap instead of
fresh zeroed pages, as it does in any process that has freed such a tensor (e.g. after one training step). Without
it, a fresh process pays page faults on every few-MB temporary (both sides; at 224 px up to 2x on ours, whichever
ran first), and the ratio depends on allocation history rather than on the code.

    python benchmarks/augmix_vs_torchvision.py [--n32 512] [--n224 64] [--threads 1] [--reps 5]
"""
import argparse, os, statistics as st, time
import torch, torchvision
from robust_nb.augment import augmix
from robust_nb.core import make_generator

def warm_allocator(nbytes:int=32_000_000):
    "Allocate and free one `nbytes` block: glibc's dynamic mmap threshold rises to it (32 MiB at most)."
    torch.empty(nbytes, dtype=torch.uint8).fill_(0)

def _clock(f):
    t, c = time.perf_counter(), time.thread_time(); f()
    return time.perf_counter() - t, time.thread_time() - c

def bench(n, size, batch, reps, float_input=False):
    x = (torch.rand(n, 3, size, size, generator=make_generator(0)) * 255).byte()
    tv = torchvision.transforms.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1., all_ops=False)
    g = make_generator(0); torch.manual_seed(0)
    def run_tv():
        for im in x: tv(im)
    def run_ours():
        for i in range(0, n, batch):
            xb = x[i:i + batch]
            augmix(xb.float().div_(255) if float_input else xb, severity=3, generator=g)
    run_tv(); run_ours()                                                       # warm-up
    T = {'tv': [], 'ours': []}
    for _ in range(reps): T['tv'].append(_clock(run_tv)); T['ours'].append(_clock(run_ours))
    med = {k: [st.median(t[i] for t in v) / n * 1e3 for i in (0, 1)] for k, v in T.items()}   # ms/img [wall, cpu]
    print(f"{size:>3} px, {n} images (batch {batch}): torchvision {med['tv'][0]:7.3f} ms/img wall, {med['tv'][1]:7.3f} cpu"
          f" | robust_nb {med['ours'][0]:7.3f} wall, {med['ours'][1]:7.3f} cpu"
          f" | ratio {med['tv'][0] / med['ours'][0]:5.2f}x wall, {med['tv'][1] / med['ours'][1]:5.2f}x cpu", flush=True)
    return med

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n32', type=int, default=512); p.add_argument('--n224', type=int, default=64)
    p.add_argument('--batch', type=int, default=256); p.add_argument('--threads', type=int, default=1)
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--batch224', type=int, default=64, help='batch at 224 px (a 64-image float batch is 38 MB: above the 32 MB '
                   'limit, so its input and output pages are fresh on every call)')
    p.add_argument('--float-input', action='store_true', help='give ours float images (converted in the timed region)')
    a = p.parse_args()
    torch.set_num_threads(a.threads); warm_allocator()
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {a.threads} thread(s), load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    if a.n32: bench(a.n32, 32, a.batch, a.reps, a.float_input)
    if a.n224: bench(a.n224, 224, a.batch224, a.reps, a.float_input)
