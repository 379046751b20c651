"""Throughput of the -C dataset builder (`robust_nb.corrupt_dataset.corrupt_folder`) at 224 px.

Writes a small source folder of 300x400 JPEGs, then times, on the same images and corruptions:
- `make_imagenet_c`-style loop: for each (corruption, severity), for each image: decode, Resize 256 + CenterCrop 224,
  corrupt, JPEG-85 encode, write (one process, each image decoded once per cell), using the same `corrupt`;
- `corrupt_folder` with 1 and 2 workers (decode once per image, threads, atomic writes, manifests).
Prints output images/s and the ratios. Uses `robust_nb.corruptions.corrupt` (`--standin` for a cheap noise stand-in).

    python benchmarks/corrupt_dataset.py [--n 24] [--corruptions gaussian_noise,fog,contrast] [--severities 1,3,5] [--threads 1]
"""
import argparse, shutil, tempfile, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from robust_nb.core import atomic_write_bytes
from robust_nb.corrupt_dataset import corrupt_folder, prepare, encode_jpeg, image_seed, list_images

def standin(x, name, severity, generator=None):
    return (x + 0.04*severity*torch.randn(x.shape, generator=generator, device=x.device)).clamp(0, 1)

def make_src(root, n):
    rng = np.random.default_rng(0); yy, xx = np.mgrid[0:300, 0:400]
    for i in range(n):
        a = (128 + 100*np.sin(xx/rng.uniform(5, 40) + yy/rng.uniform(5, 40))[..., None]*rng.uniform(-1, 1, 3)).clip(0, 255)
        (root/f'c{i % 4}').mkdir(parents=True, exist_ok=True)
        Image.fromarray(a.astype(np.uint8)).save(root/f'c{i % 4}'/f'{i}.JPEG', quality=90)

def loop_reference(src, dst, corruptions, severities, fn):
    "One image at a time, one cell at a time, as the ImageNet-C make script does."
    for c in corruptions:
        for s in severities:
            for f in list_images(src):
                x = prepare(src/f)
                g = torch.Generator().manual_seed(image_seed(0, c, s, f))
                atomic_write_bytes(dst/c/str(s)/Path(f).with_suffix('.jpg'), encode_jpeg(fn(x, c, s, generator=g), 85))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=24); p.add_argument('--corruptions', default='gaussian_noise,fog,contrast')
    p.add_argument('--severities', default='1,3,5'); p.add_argument('--threads', type=int, default=1)
    p.add_argument('--standin', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cs, ss = a.corruptions.split(','), [int(s) for s in a.severities.split(',')]
    if a.standin: fn, valid = standin, cs
    else:
        from robust_nb.corruptions import corrupt as fn
        valid = None
    tmp = Path(tempfile.mkdtemp()); src = tmp/'src'; make_src(src, a.n)
    n_out = a.n*len(cs)*len(ss)
    print(f"{a.n} images x {len(cs)} corruptions x {len(ss)} severities = {n_out} outputs at 224 px, torch threads {a.threads}, "
          f"corrupt = {'stand-in' if a.standin else 'robust_nb.corruptions.corrupt'}")
    t0 = time.perf_counter(); loop_reference(src, tmp/'loop', cs, ss, fn); t_loop = time.perf_counter() - t0
    print(f"per-cell loop (decode per cell)      : {n_out/t_loop:7.1f} img/s")
    res = {}
    for w in (1, 2):
        t0 = time.perf_counter()
        corrupt_folder(src, tmp/f'w{w}', cs, ss, corrupt_fn=fn, valid_names=valid if a.standin else None, workers=w, show_progress=False)
        res[w] = time.perf_counter() - t0
        print(f"corrupt_folder, {w} worker{'s' if w > 1 else ' '}              : {n_out/res[w]:7.1f} img/s  ({t_loop/res[w]:.2f}x the loop)")
    same = all((tmp/'loop'/q).read_bytes() == (tmp/'w2'/q).read_bytes() for q in
               [p.relative_to(tmp/'loop') for p in (tmp/'loop').rglob('*.jpg')])
    print(f"2 workers vs 1: {res[1]/res[2]:.2f}x; outputs byte-identical to the loop: {same}")
    shutil.rmtree(tmp)
