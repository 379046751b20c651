"""Training cost of DAD's adversarial baselines (AdvProp, Pyramid AT) against plain fine-tuning, on the embedded benchmark.

Run: OMP_NUM_THREADS=2 python benchmarks/adv_baselines_cost.py [--steps 8] [--batch 64]
Prints ms per training image for finetune / advprop / pyramid_at on the embedded students (32 px photo/train images,
random init: the cost does not depend on the weights) and the ratio to fine-tuning, as robust_nb.baselines.Tuned
measures it (whole fit call, after one untimed warm-up run of each)."""
import argparse, os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch
from robust_nb.synthetic import render
from robust_nb.embedded import create
from robust_nb.baselines import finetune, advprop, pyramid_at

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=8); p.add_argument('--batch', type=int, default=64)
    p.add_argument('--models', default='resnet,vit')
    a = p.parse_args()
    x, y = render('photo', a.steps * a.batch, 32, split='train')
    print(f"torch threads {torch.get_num_threads()}; {a.steps} steps x batch {a.batch} at 32 px")
    for name in a.models.split(','):
        torch.manual_seed(0); m = create(name, pretrained=False, progress=False)
        row = {}
        for fn in (finetune, advprop, pyramid_at):
            kw = dict(epochs=1, batch_size=a.batch, progress=False)
            fn(m, (x[:a.batch], y[:a.batch]), max_steps=1, **kw)                       # warm-up
            row[fn.__name__] = fn(m, (x, y), max_steps=a.steps, **kw).ms_per_img
        base = row['finetune']
        print(f"{name:7s} " + '  '.join(f"{k} {v:6.2f} ms/img ({v / base:4.1f}x)" for k, v in row.items()))

if __name__ == '__main__': main()
