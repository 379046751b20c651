"""Overhead of `robust_nb.engine.fit` over a bare PyTorch training loop (same model, optimiser, batches).

The bare loop indexes pre-shuffled tensors and runs forward/backward/AdamW step; `fit` adds accelerate, the schedule,
per-step logging and (with --ckpt-every) atomic checkpoints. Both train timm's `test_resnet` on 32-px synthetic images,
alternating bare/fit runs `--repeat` times; prints the median ms/img of each and the ratio fit / bare.

    python benchmarks/engine_overhead.py [--n 2048] [--batch 128] [--repeat 3] [--threads 2] [--ckpt-every 0]
"""
import argparse, os, statistics, tempfile, time
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('ROBUST_NB_NO_PROGRESS', '1')
import torch, torch.nn.functional as F, timm
from robust_nb.engine import fit
from robust_nb.synthetic import render, NUM_CLASSES

def model():
    torch.manual_seed(0)
    return timm.create_model('test_resnet', num_classes=NUM_CLASSES, pretrained=False)

def ce(m, b): return F.cross_entropy(m(b[0]), b[1])

def bare(x, y, batch):
    m = model().train(); opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        idx = perm[i:i + batch]
        loss = ce(m, (x[idx], y[idx])); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return 1000 * (time.perf_counter() - t0) / len(x)

def engine(x, y, batch, ckpt_every):
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        fit(model(), ce, (x, y), epochs=1, batch_size=batch, lr=1e-3, progress=False,
            ckpt_dir=d if ckpt_every else None, ckpt_every=ckpt_every or None)
        return 1000 * (time.perf_counter() - t0) / len(x)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=2048); p.add_argument('--batch', type=int, default=128)
    p.add_argument('--repeat', type=int, default=3); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--ckpt-every', type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x, y = render('photo', a.n, seed=0, split='train')
    engine(x[:a.batch], y[:a.batch], a.batch, 0)                                   # warm-up (imports, accelerate state)
    tb, te = [], []
    for _ in range(a.repeat): tb.append(bare(x, y, a.batch)); te.append(engine(x, y, a.batch, a.ckpt_every))
    b, e = statistics.median(tb), statistics.median(te)
    print(f"test_resnet, {a.n} imgs of 32 px, batch {a.batch}, {a.threads} threads, ckpt_every={a.ckpt_every}: "
          f"bare loop {b:.3f} ms/img | fit {e:.3f} ms/img | fit/bare {e / b:.3f}")
