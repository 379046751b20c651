"""Throughput of robust_nb's batched `augmix` vs `torchvision.transforms.AugMix` applied image by image.

Both get uint8 tensors [3,H,W] (torchvision) / [B,3,H,W] (ours, converted to float inside the timed region), the same
nine ops (`all_ops=False`), severity 3, width 3, random depth. One run per size; prints images/s and the ratio.

    python benchmarks/augmix_vs_torchvision.py [--n32 512] [--n224 64] [--threads 2]
"""
import argparse, time
import torch, torchvision
from robust_nb.augment import augmix
from robust_nb.core import make_generator

def bench(n, size, batch):
    x = (torch.rand(n, 3, size, size, generator=make_generator(0)) * 255).byte()
    tv = torchvision.transforms.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1., all_ops=False)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    for im in x: tv(im)
    t_tv = time.perf_counter() - t0
    g = make_generator(0)
    t0 = time.perf_counter()
    for i in range(0, n, batch): augmix(x[i:i + batch].float() / 255, severity=3, generator=g)
    t_us = time.perf_counter() - t0
    print(f"{size:>3} px, {n} images (batch {batch}): torchvision {n / t_tv:8.0f} img/s | robust_nb {n / t_us:8.0f} img/s"
          f" | ratio {t_tv / t_us:5.1f}x")
    return t_tv / t_us

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n32', type=int, default=1024); p.add_argument('--n224', type=int, default=128)
    p.add_argument('--batch', type=int, default=256); p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {a.threads} threads")
    bench(a.n32, 32, a.batch); bench(a.n224, 224, min(a.batch, 64))
