"""Peak memory of `multihead.distill` on an ImageFolder of N and of 10N images: it should not depend on the dataset size.

Fabricates an ImageFolder of random-pixel PNGs (10 classes, `--size` px), then runs the same distillation on the first N
and on all 10N images, each in a fresh subprocess, and prints each child's peak RSS (`resource.getrusage`, ru_maxrss)
and their ratio. `--mode dataset` (default) hands distill the ImageFolder Dataset: D^a is a `TuningData` (augmented
copies made on read from the image index), the frozen-backbone features are computed streaming and, beyond
`--budget-mb`, written to fp16 disk shards that training reads row by row. `--mode tensors` first reads every image into
one tensor (what robust_nb_distill did before it streamed; benchmarks/distill_cli_memory.py measures the script now), for contrast. Goal: ratio within 1.2 in dataset mode.

    python benchmarks/distill_memory.py --n 200 [--mult 10] [--size 64] [--mode dataset|tensors] [--budget-mb 0]
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("ROBUST_NB_NO_PROGRESS", "1")


def fabricate(root:Path, n:int, size:int, classes:int=10):
    "`n` random-pixel PNGs of `size` px in `classes` class folders (image i in class i % classes)."
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes): (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"c{i % classes}" / f"{i:06d}.png")


def link_subset(src:Path, dst:Path, n:int, classes:int=10):
    "Hard links to the first `n` images of `src` (same files, so the two runs read identical pixels)."
    for c in range(classes): (dst / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n): os.link(src / f"c{i % classes}" / f"{i:06d}.png", dst / f"c{i % classes}" / f"{i:06d}.png")


def child(a):
    import torch
    torch.set_num_threads(a.threads)
    from robust_nb.data import image_folder
    from robust_nb.models import timm_classifier
    from robust_nb.multihead import distill
    ds, classes = image_folder(a.root, size=a.size)
    torch.manual_seed(0)
    student = timm_classifier("resnet18", len(classes))
    teacher = timm_classifier("test_resnet", len(classes))
    data = ds
    if a.mode == "tensors":
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        data = (torch.stack(xs), torch.as_tensor(ys))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # imports, models, data index (and images in tensors mode)
    t0 = time.time()
    r = distill(student, teacher, data, blocks=1, a=0.5, epochs=a.epochs, batch_size=a.batch_size,
                cache_budget=int(a.budget_mb * 2**20), cache_path=a.cache, seed=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(n=len(ds), d_a=r.n_seen // a.epochs, peak_rss_mb=peak, before_distill_mb=before,
                          cache_s=round(r.cache_s, 1), train_s=round(r.train_s, 1), wall_s=round(time.time() - t0, 1),
                          last_loss=r.history[-1]["loss"])))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200); p.add_argument("--mult", type=int, default=10)
    p.add_argument("--size", type=int, default=64); p.add_argument("--mode", choices=("dataset", "tensors"), default="dataset")
    p.add_argument("--budget-mb", type=float, default=0., help="feature-cache memory budget (0: always disk shards)")
    p.add_argument("--epochs", type=int, default=1); p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS); p.add_argument("--cache", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child: return child(a)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fabricate(tmp / "big", a.n * a.mult, a.size); link_subset(tmp / "big", tmp / "small", a.n)
        res = {}
        for name in ("small", "big"):
            cmd = [sys.executable, __file__, "--child", "--root", str(tmp / name), "--cache", str(tmp / f"cache_{name}"),
                   "--size", str(a.size), "--mode", a.mode, "--budget-mb", str(a.budget_mb), "--epochs", str(a.epochs),
                   "--batch-size", str(a.batch_size), "--threads", str(a.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
            if out.returncode: sys.exit(f"child failed:\n{out.stderr[-3000:]}")
            res[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{a.mode:8s} N={res[name]['n']:6d} (D^a {res[name]['d_a']:6d} items): peak RSS {res[name]['peak_rss_mb']:.0f} MB "
                  f"(before distill {res[name]['before_distill_mb']:.0f} MB; cache {res[name]['cache_s']} s, train {res[name]['train_s']} s)", flush=True)
        ratio = res["big"]["peak_rss_mb"] / res["small"]["peak_rss_mb"]
        grow = [res[k]["peak_rss_mb"] - res["small"]["before_distill_mb"] for k in ("small", "big")]
        print(f"peak RSS ratio {a.mult}N / N = {ratio:.3f} ({'within' if ratio <= 1.2 else 'NOT within'} 20%); "
              f"peak above the N run's pre-distill RSS: {grow[0]:.0f} MB (N) vs {grow[1]:.0f} MB ({a.mult}N)")


if __name__ == "__main__": main()
