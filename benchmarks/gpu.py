"""Every GPU path of robust_nb, timed on CUDA against its CPU run or its compute bound, as ratios.

NOT YET RUN ON A GPU: no GPU has been lent to this project so far; the figures in the docs say "not measured on GPU"
until this script has run. It exits with a message (status 2) when no CUDA device is present. `--dry-run` runs
every section on the CPU with tiny sizes, to check the script itself; its figures mean nothing.

    python benchmarks/gpu.py [--size 224] [--sections fit,corruptions,augmix,dad,evaluate] [--reps 3]
    python benchmarks/gpu.py --dry-run        # no GPU needed: checks that every section runs

Sections (each prints its own lines; a failing section prints its error and the others still run):
1. fit: one AMP training step of `engine.fit` (`mixed_precision='bf16'`, torchvision ResNet-50, 224 px) against a bare
   `torch.autocast` loop and a bare fp32 loop on the same batches: AMP speed-up (fp32 / bf16) and fit overhead (fit / bare).
2. corruptions: each of the 15 ImageNet-C corruptions on a batch on CUDA vs on the CPU (all cores): ms/img and speed-up.
3. augmix: batched `augmix` on CUDA vs on the CPU (all cores) vs torchvision's AugMix per image on the CPU.
4. dad: `generate_dad` end to end vs its bound, `dad_chunk` (attack + VQ + check) on the same chunks with the data on the GPU.
5. evaluate: `evaluate` on an on-the-fly -C suite (15 corruptions, severity 3) vs bare corruption + forward, img/s.
Timings are medians over `--reps` alternating runs, with `torch.cuda.synchronize()` before each clock read.
"""
import argparse, os, shutil, statistics as st, sys, tempfile, time, traceback
os.environ.setdefault('ROBUST_NB_NO_PROGRESS', '1'); os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch, torch.nn.functional as F

def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def timed(fs:dict, dev, reps:int) -> dict:
    "Median seconds of each callable in `fs`, run alternately `reps` times after one warm-up each."
    for f in fs.values(): f(); _sync(dev)
    T = {k: [] for k in fs}
    for _ in range(reps):
        for k, f in fs.items():
            _sync(dev); t = time.perf_counter(); f(); _sync(dev); T[k].append(time.perf_counter() - t)
    return {k: st.median(v) for k, v in T.items()}

def _resnet(arch, num_classes, dev):
    import torchvision
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(num_classes=num_classes).to(dev)

def bench_fit(a, dev):
    from robust_nb.engine import fit
    B, steps = a.batch, a.steps
    x, y = torch.rand(B * steps, 3, a.size, a.size), torch.randint(0, 1000, (B * steps,))
    xd, yd = x.to(dev), y.to(dev)
    def loss_fn(m, b): return F.cross_entropy(m(b[0]), b[1])
    def bare(amp):
        m = _resnet(a.arch, 1000, dev).train(); opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        def run():
            for i in range(steps):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    loss = loss_fn(m, (xd[i * B:(i + 1) * B], yd[i * B:(i + 1) * B]))
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        return run
    def engine():
        fit(_resnet(a.arch, 1000, dev), loss_fn, (x, y), max_steps=steps, batch_size=B, lr=1e-3, mixed_precision='bf16',
            progress=False, drop_last=True)
    t = timed({'fp32': bare(False), 'bf16': bare(True), 'fit_bf16': engine}, dev, a.reps)
    ms = {k: v / steps * 1e3 for k, v in t.items()}
    print(f"[fit] {a.arch} {a.size}px batch {B}, {steps} steps: bare fp32 {ms['fp32']:.1f} ms/step | bare bf16 "
          f"{ms['bf16']:.1f} | fit bf16 {ms['fit_bf16']:.1f} (incl. model build + host->device copies)")
    print(f"[fit] AMP speed-up fp32/bf16 {ms['fp32'] / ms['bf16']:.2f}x | fit overhead fit/bare {ms['fit_bf16'] / ms['bf16']:.2f}")

def bench_corruptions(a, dev):
    from robust_nb.corruptions import corrupt, CORRUPTIONS
    from robust_nb.core import make_generator
    from robust_nb.synthetic import render
    x, _ = render('photo', a.n, size=a.size, seed=0, split='test'); xd = x.to(dev)
    cpu = torch.device('cpu'); rows = []
    for name in CORRUPTIONS:
        t = timed({'cpu': lambda: corrupt(x, name, 3, make_generator(0)),
                   'dev': lambda: corrupt(xd, name, 3, make_generator(0, dev))}, dev, a.reps)
        rows.append((name, t['cpu'] / a.n * 1e3, t['dev'] / a.n * 1e3))
        print(f"[corruptions] {name:18s} cpu ({torch.get_num_threads()} thr) {rows[-1][1]:8.3f} ms/img | {dev.type} "
              f"{rows[-1][2]:8.4f} ms/img | {rows[-1][1] / rows[-1][2]:7.1f}x", flush=True)
    g = st.geometric_mean([c / d for _, c, d in rows]); s = sum(c for _, c, _ in rows) / sum(d for _, _, d in rows)
    print(f"[corruptions] batch {a.n} at {a.size}px, severity 3: geometric-mean speed-up {g:.1f}x, suite {s:.1f}x, "
          f"suite on {dev.type} {sum(d for _, _, d in rows) * 5:.2f} ms/img for all 15 x 5")

def bench_augmix(a, dev):
    import torchvision
    from robust_nb.augment import augmix
    from robust_nb.core import make_generator
    x8 = (torch.rand(a.n, 3, a.size, a.size, generator=make_generator(0)) * 255).byte(); x8d = x8.to(dev)
    tv = torchvision.transforms.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1., all_ops=False)
    k = min(a.n, 32)
    t = timed({'tv': lambda: [tv(im) for im in x8[:k]],
               'cpu': lambda: augmix(x8.float() / 255, generator=make_generator(0)),
               'dev': lambda: augmix(x8d.float() / 255, generator=make_generator(0, dev))}, dev, a.reps)
    tv_ms, cpu_ms, dev_ms = t['tv'] / k * 1e3, t['cpu'] / a.n * 1e3, t['dev'] / a.n * 1e3
    print(f"[augmix] {a.size}px batch {a.n}: torchvision per image (cpu) {tv_ms:.3f} ms/img | ours cpu "
          f"({torch.get_num_threads()} thr) {cpu_ms:.3f} | ours {dev.type} {dev_ms:.4f} | {dev.type} vs cpu "
          f"{cpu_ms / dev_ms:.1f}x, vs torchvision {tv_ms / dev_ms:.1f}x")

def bench_dad(a, dev):
    from robust_nb.dad import generate_dad, dad_chunk, Teacher, DEFAULT_PRESET
    from robust_nb.models import small_cnn
    from robust_nb.vqgan import VQDiscretiser, vq_model
    from robust_nb.synthetic import render, NUM_CLASSES
    from robust_nb.core import make_generator
    torch.manual_seed(0)
    teacher = Teacher(small_cnn(NUM_CLASSES)).to(dev).eval()
    vq = VQDiscretiser(vq_model('tiny'), grad='none').to(dev).eval()
    x, y = render('photo', a.dad_n, size=a.dad_size, split='train'); C = a.dad_chunk
    chunks = [(x[i:i + C].to(dev), y[i:i + C].to(dev)) for i in range(0, len(x), C)]
    def bound():
        for j, (xb, yb) in enumerate(chunks): dad_chunk(teacher, vq, xb, yb, DEFAULT_PRESET, make_generator(j, dev))
    def gen():
        d = tempfile.mkdtemp()
        try: generate_dad(teacher, vq, (x, y), d, chunk_size=C, device=dev, progress_bar=False)
        finally: shutil.rmtree(d)
    t = timed({'bound': bound, 'gen': gen}, dev, a.reps)
    print(f"[dad] {a.dad_n} images of {a.dad_size}px, chunk {C}, preset {DEFAULT_PRESET}: bound (dad_chunk, data on the "
          f"device) {a.dad_n / t['bound']:.0f} img/s | generate_dad {a.dad_n / t['gen']:.0f} img/s | "
          f"bound/generate {t['bound'] / t['gen']:.2f}")

def bench_evaluate(a, dev):
    from robust_nb.corruptions import corrupt, CORRUPTIONS
    from robust_nb.core import make_generator
    from robust_nb.data import Shift, Suite
    from robust_nb.evaluate import evaluate
    from robust_nb.synthetic import render
    x, y = render('photo', a.n, size=a.size, seed=0, split='test'); y = y % 10
    class Mem(torch.utils.data.Dataset):
        def __len__(s): return len(y)
        def __getitem__(s, i): return x[i], int(y[i])
        def tensors(s): return x, y
        def __repr__(s): return f"Mem({len(y)}, {a.size})"
    shifts = [Shift(f'{c}-3', Mem(), 'corruption', c, 3, on_the_fly=True) for c in CORRUPTIONS]
    suite = Suite('gpu-bench', 10, list('abcdefghij'), shifts)
    model = _resnet(a.arch, 10, dev).eval()
    def bare():
        with torch.no_grad():
            for s in shifts:
                for b, i in enumerate(range(0, a.n, a.batch)):
                    xb = x[i:i + a.batch].to(dev, non_blocking=True)
                    model(corrupt(xb, s.corruption, 3, make_generator(b, dev))).float().argmax(1).cpu()
    def ev(): evaluate(model, suite, batch_size=a.batch, device=dev, cache=False, progress=False, baseline=None)
    t = timed({'bare': bare, 'evaluate': ev}, dev, a.reps)
    N = a.n * len(shifts)
    print(f"[evaluate] {a.arch} {a.size}px, 15 on-the-fly corruptions x {a.n} images, batch {a.batch}: bare "
          f"{N / t['bare']:.0f} img/s | evaluate {N / t['evaluate']:.0f} img/s | evaluate/bare time {t['evaluate'] / t['bare']:.2f}")

SECTIONS = dict(fit=bench_fit, corruptions=bench_corruptions, augmix=bench_augmix, dad=bench_dad, evaluate=bench_evaluate)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sections', default=','.join(SECTIONS)); p.add_argument('--size', type=int, default=224)
    p.add_argument('--n', type=int, default=64, help='batch of images for corruptions/augmix/evaluate')
    p.add_argument('--batch', type=int, default=64, help='training / evaluation batch')
    p.add_argument('--steps', type=int, default=20); p.add_argument('--arch', default='resnet50')
    p.add_argument('--dad-n', type=int, default=4096); p.add_argument('--dad-size', type=int, default=32)
    p.add_argument('--dad-chunk', type=int, default=512); p.add_argument('--reps', type=int, default=3)
    p.add_argument('--dry-run', action='store_true', help='run every section on the CPU with tiny sizes (checks the script only)')
    a = p.parse_args()
    if a.dry_run:
        dev = torch.device('cpu')
        a.size, a.n, a.batch, a.steps, a.arch, a.dad_n, a.dad_size, a.dad_chunk, a.reps = 32, 4, 4, 2, 'resnet18', 64, 16, 32, 1
        print("DRY RUN on the CPU with tiny sizes: checks that each section runs; the figures mean nothing")
    elif not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device is visible (torch.cuda.is_available() is False), and this script measures "
              "GPU paths only. Run it on a machine with an NVIDIA GPU, or pass --dry-run to check it on the CPU.", file=sys.stderr)
        sys.exit(2)
    else:
        dev = torch.device('cuda')
        torch.backends.cudnn.benchmark = True
        print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"{torch.get_num_threads()} CPU threads")
    failed = []
    for name in a.sections.split(','):
        try: SECTIONS[name](a, dev)
        except Exception:
            failed.append(name); print(f"[{name}] FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    if failed: sys.exit(f"sections that failed: {', '.join(failed)}")

if __name__ == '__main__': main()
