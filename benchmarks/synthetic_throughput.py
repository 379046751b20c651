"""Throughput of `robust_nb.synthetic.render`: images/s per domain at 32 and 64 px (goal: >= 2,000 images/s at 32 px on 2 CPU cores).

Prints two rates per setting: wall-clock images/s, and images per CPU-second of this process (`time.process_time`),
which is what an idle machine would give per busy core; on a shared machine the wall-clock figure is lower.

Usage: python benchmarks/synthetic_throughput.py [--n 2048] [--threads 1 2] [--repeats 3] [--sizes 32 64]
"""
import argparse, time
import torch
from robust_nb.synthetic import render, DOMAINS, TRANSFER

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=2048, help='images per timed call')
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch CPU thread counts to try')
    p.add_argument('--repeats', type=int, default=3, help='timed calls per setting (the best is reported)')
    p.add_argument('--sizes', type=int, nargs='+', default=[32, 64])
    a = p.parse_args()
    print(f"torch {torch.__version__}, n={a.n}, best of {a.repeats}; rates are images/s (wall) / images per CPU-s")
    for th in a.threads:
        torch.set_num_threads(th)
        for size in a.sizes:
            render('photo', 64, size)  # warm-up (shape normalisation, allocator)
            wall, cpu = {}, {}
            for d in DOMAINS + (TRANSFER,):
                bw = bc = float('inf')
                for r in range(a.repeats):
                    t, c = time.perf_counter(), time.process_time()
                    render(d, a.n, size, seed=r)
                    bw, bc = min(bw, time.perf_counter() - t), min(bc, time.process_time() - c)
                wall[d], cpu[d] = a.n / bw, a.n / bc
            hm = lambda r: len(r) / sum(1 / v for v in r.values())   # all domains equally often
            print(f"{th} thread(s) {size:3d} px: " + ", ".join(f"{d} {wall[d]:,.0f}/{cpu[d]:,.0f}" for d in wall)
                  + f" | all domains {hm(wall):,.0f}/{hm(cpu):,.0f}", flush=True)

if __name__ == '__main__': main()
