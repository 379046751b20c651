"""Throughput of `robust_nb.corruptions.corrupt` vs the reference `imagecorruptions` 1.1.2 on the same images.

    python benchmarks/corruptions_vs_imagecorruptions.py [--n 8] [--size 224] [--batch 8] [--device cpu|cuda] [--names a,b]

Images: `robust_nb.synthetic.render('photo', n, size)`. Both sides run with `torch.set_num_threads(1)` (and OpenCV with one
thread) so that one core is compared with one core; ours is also timed with 2 threads (and on `--device` when not cpu).
The reference needs the dev-only shim in tests/_imagecorruptions_shim.py (pip install imagecorruptions==1.1.2
scikit-image opencv-python-headless Pillow). Prints ms/img per corruption (mean over severities 1-5), the whole 15 x 5
suite, and the speed-up ratios.
"""
import argparse, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
import _imagecorruptions_shim as S
from robust_nb.corruptions import corrupt, CORRUPTIONS, EXTRA_CORRUPTIONS
from robust_nb.core import make_generator
from robust_nb.synthetic import render

def time_ours(x, name, sev, batch, device, reps=1):
    g = make_generator(0, device)
    xs = x.to(device).split(batch)
    corrupt(xs[0][:1], name, sev, g)  # warm-up (caches: kernels, frost textures)
    if device.type == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        for xb in xs: corrupt(xb, name, sev, g)
    if device.type == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t) / (reps * len(x)) * 1e3

def time_ref(x, name, sev):
    S.reference_corrupt(x[:1], name, sev)  # warm-up
    t = time.perf_counter(); S.reference_corrupt(x, name, sev)
    return (time.perf_counter() - t) / len(x) * 1e3

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=8); p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=8); p.add_argument('--device', default='cpu')
    p.add_argument('--names', default=None, help='comma-separated corruptions (default: the 15)')
    p.add_argument('--no-ref', action='store_true', help='time ours only (e.g. on a GPU machine without the reference)')
    a = p.parse_args()
    names = a.names.split(',') if a.names else list(CORRUPTIONS)
    x, _ = render('photo', a.n, size=a.size, seed=0, split='test')
    dev = torch.device(a.device)
    try:
        import cv2; cv2.setNumThreads(1)
    except ImportError: pass
    rows = []
    for n in names:
        r = dict(name=n, ref=[], ours1=[], ours2=[], dev=[])
        for sev in range(1, 6):
            torch.set_num_threads(1)
            if not a.no_ref: r['ref'].append(time_ref(x, n, sev))
            r['ours1'].append(time_ours(x, n, sev, a.batch, torch.device('cpu')))
            torch.set_num_threads(2)
            r['ours2'].append(time_ours(x, n, sev, a.batch, torch.device('cpu')))
            if dev.type != 'cpu': r['dev'].append(time_ours(x, n, sev, a.batch, dev, reps=3))
        rows.append({k: (sum(v) / len(v) if isinstance(v, list) and v else v) for k, v in r.items()})
        print(f"{n:18s} " + ' '.join(f"{k}={v:8.2f}" for k, v in rows[-1].items() if k != 'name' and v != []), flush=True)
    def tot(k): return sum(r[k] for r in rows) / len(rows)
    hdr = f"\n| corruption | ref ms/img (1 thr) | ours ms/img (1 thr) | speed-up | ours (2 thr) |" + (f" ours {a.device} |" if dev.type != 'cpu' else '')
    print(hdr); print('|' + '---|' * (hdr.count('|') - 1))
    for r in rows + [dict(name=f'mean over {len(rows)}x5', **{k: tot(k) for k in ('ref', 'ours1', 'ours2', 'dev') if rows[0][k] != []})]:
        sp = f"{r['ref'] / r['ours1']:.1f}x" if r.get('ref') not in (None, []) else '-'
        ref = f"{r['ref']:.2f}" if r.get('ref') not in (None, []) else '-'
        line = f"| {r['name']} | {ref} | {r['ours1']:.2f} | {sp} | {r['ours2']:.2f} |"
        if dev.type != 'cpu': line += f" {r['dev']:.3f} |"
        print(line)
    print(f"\nsettings: n={a.n} size={a.size} batch={a.batch} device={a.device} torch={torch.__version__}")

if __name__ == '__main__': main()
