"""Training cost of DAD's adversarial baselines (AdvProp, Pyramid AT) against plain fine-tuning, on the embedded benchmark.

Run: OMP_NUM_THREADS=2 python benchmarks/adv_baselines_cost.py [--reps 3] [--batch 64] [--models resnet,vit]
For each embedded student (random init: the cost does not depend on the weights) and 32 px photo/train images, times one
training step (loss + backward + optimizer step) of fine-tuning (CE), AdvProp and Pyramid AT, interleaved
(finetune, advprop, pyramid_at, finetune, ...) `--reps` times after one warm-up round so that a change in the machine's
load hits all three alike, and prints the median ms per image and the ratio to fine-tuning."""
import argparse, copy, os, statistics, time
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch
from robust_nb.synthetic import render
from robust_nb.embedded import create
from robust_nb.losses import ce
from robust_nb.dad import add_aux_bn, method_loss     # the implementations robust_nb.baselines.advprop/pyramid_at fine-tune with

def _step(model, loss_fn, opt, batch):
    t0 = time.perf_counter()
    out = loss_fn(model, batch); loss = out[0] if isinstance(out, tuple) else out
    opt.zero_grad(); loss.backward(); opt.step()
    return time.perf_counter() - t0

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reps', type=int, default=3); p.add_argument('--batch', type=int, default=64)
    p.add_argument('--models', default='resnet,vit')
    a = p.parse_args()
    x, y = render('photo', a.batch, 32, split='train')
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}; batch {a.batch} at 32 px, "
          f"median of {a.reps} interleaved steps")
    for name in a.models.split(','):
        torch.manual_seed(0); base = create(name, pretrained=False, progress=False).train()
        runs = {'finetune': (base, lambda m, b: ce(m(b[0]), b[1])),
                'advprop': (add_aux_bn(copy.deepcopy(base)).train(), method_loss('advprop')), 'pyramid_at': (base, method_loss('pyramid_at'))}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.) for k, (m, _) in runs.items()}   # lr 0: every step sees the same weights
        times = {k: [] for k in runs}
        for r in range(a.reps + 1):
            for k, (m, f) in runs.items():
                t = _step(m, f, opts[k], (x, y))
                if r: times[k].append(1000 * t / a.batch)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:7s} " + '  '.join(f"{k} {v:6.2f} ms/img ({v / med['finetune']:4.1f}x)" for k, v in med.items()))

if __name__ == '__main__': main()
