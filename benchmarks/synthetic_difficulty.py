"""Difficulty of the embedded benchmark: a small BN CNN (0.14M params) trained on `photo` train, accuracy on every domain per epoch.

Usage: python benchmarks/synthetic_difficulty.py [N_TRAIN EPOCHS]   (default 6000 8; single thread)
"""
import torch, torch.nn as nn, torch.nn.functional as F, time, sys
torch.set_num_threads(1); torch.manual_seed(0)
from robust_nb.synthetic import render, DOMAINS, NUM_CLASSES
N, E = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (6000, 8)
t = time.time()
xtr, ytr = render('photo', N, seed=0)
ev = {d: render(d, 500, seed=0, split='test' if d == 'photo' else 'train') for d in DOMAINS}
print('render', time.time() - t, flush=True)
def blk(i, o): return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
net = nn.Sequential(*blk(3, 32), *blk(32, 32), nn.MaxPool2d(2), *blk(32, 64), *blk(64, 64), nn.MaxPool2d(2), *blk(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, NUM_CLASSES))
steps = E * (N // 64); opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=5e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 4e-3, total_steps=steps)
for e in range(E):
    net.train()
    for i in torch.randperm(N).split(64)[:N // 64]:
        xb = xtr[i]; xb = torch.where(torch.rand(len(i), 1, 1, 1) < .5, xb, xb.flip(3))
        loss = F.cross_entropy(net(xb), ytr[i]); opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    net.eval()
    with torch.no_grad(): accs = {d: (net(x).argmax(1) == y).float().mean().item() for d, (x, y) in ev.items()}
    print(e, round(loss.item(), 3), {d: round(a, 3) for d, a in accs.items()}, round(time.time() - t), flush=True)
