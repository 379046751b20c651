"""Throughput of DAD generation (`robust_nb.dad.generate_dad`) against its bare compute.

    python benchmarks/dad_generate.py [--n 2048] [--chunk 256] [--size 16] [--vq tiny] [--teacher small_cnn] [--preset linf]
    python benchmarks/dad_generate.py --size 224 --vq f8 --teacher resnet50 --n 4 --chunk 2 --repeats 3 --threads 1

Bare cost per chunk = what eq. 9 cannot avoid under the attack preset: teacher forward+backward per attack step, VQ
encode/decode of the attacked image, teacher forward on Q(x') (the correctness filter); with the 'authors' preset also
Q(x) for the start and the teacher's clean logits for the KD criterion. It runs on the same chunks in the same process,
interleaved with `generate_dad` end to end; each is timed `--repeats` times after a warm-up and the medians are compared.
`generate_dad` adds data loading, input checks, 8-bit quantisation, the filter's argmax, model fingerprints,
safetensors serialisation, atomic writes (fsync + rename) and the manifest. Goal: ratio = bare / generate >= 0.8.

--vq f8 is the latent-diffusion vq-f8 architecture (f = 8, d = 4, K = 16384: the VQGAN of DAT and DAD; config
`vqgan.VQ_CONFIGS['vq-f8']`), --teacher resnet50 timm's ResNet-50; both have random weights, which is fine for timing
(the filter then keeps almost nothing, which only makes the shards smaller).
"""
import argparse, os, shutil, statistics, subprocess, tempfile, time
import torch, torch.nn.functional as F

VQ_ALIASES = {'f8': 'vq-f8', 'f16': 'vqgan_imagenet_f16_16384'}

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=2048); p.add_argument('--chunk', type=int, default=256)
    p.add_argument('--size', type=int, default=16)
    p.add_argument('--vq', default='tiny', help="a vqgan.VQ_CONFIGS name, or f8 (= vq-f8) / f16")
    p.add_argument('--teacher', default='small_cnn', help="small_cnn (the embedded 'foundation' architecture) or a timm model name, e.g. resnet50")
    p.add_argument('--preset', default=None, help='attack preset (dad.ATTACK_PRESETS; default dad.DEFAULT_PRESET)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--repeats', type=int, default=3); p.add_argument('--threads', type=int, default=2)
    return p.parse_args(argv)

def load() -> str:
    try: return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    except OSError: return f"load average {os.getloadavg()}"

def build(a, dev):
    from robust_nb.dad import Teacher
    from robust_nb.vqgan import VQDiscretiser, vq_model
    from robust_nb.synthetic import render, NUM_CLASSES
    torch.manual_seed(0)
    if a.teacher == 'small_cnn':
        from robust_nb.models import small_cnn
        net, k = small_cnn(NUM_CLASSES), NUM_CLASSES
    else:
        import timm
        net = timm.create_model(a.teacher, pretrained=False); k = net.num_classes
    teacher = Teacher(net).to(dev)
    vq = VQDiscretiser(vq_model(VQ_ALIASES.get(a.vq, a.vq)), grad='none').to(dev).eval()
    x, y = render('photo', a.n, size=a.size, split='train')
    if k != NUM_CLASSES: y = torch.randint(0, k, (a.n,), generator=torch.Generator().manual_seed(0))
    return teacher, vq, x, y

def bare_fn(teacher, vq, x, y, s, chunk, dev, sync, parts):
    "The compute eq. 9 cannot avoid under attack settings `s`, per chunk; adds each part's seconds to `parts`."
    def timed(key, f):
        t0 = time.perf_counter(); r = f(); sync(); parts[key] = parts.get(key, 0.) + time.perf_counter() - t0; return r
    def run():
        for i in range(0, len(x), chunk):
            xb, yb = x[i:i + chunk].to(dev), y[i:i + chunk].to(dev)
            with torch.no_grad():
                x0 = timed('VQ', lambda: vq(xb)) if s['start'] == 'q' else xb
                t = timed('teacher fwd', lambda: teacher(xb)) if s['criterion'] == 'kd' else None
            xa = x0
            for _ in range(s['steps']):
                xa = xa.detach().requires_grad_(True)
                def step():
                    out = teacher(xa)
                    loss = F.cross_entropy(out, yb) if s['criterion'] == 'ce' else F.kl_div(F.log_softmax(out / s['T'], -1), F.softmax(t / s['T'], -1), reduction='batchmean')
                    return torch.autograd.grad(loss, xa)[0]
                g = timed('teacher fwd+bwd', step)
                with torch.no_grad(): xa = (x0 + s['lr'] * g.sign()).clamp(0, 1)
            with torch.no_grad():
                q = timed('VQ', lambda: vq(xa))
                timed('teacher fwd', lambda: teacher(q).argmax(1))
    return run

def main(argv=None):
    a = parse(argv)
    torch.set_num_threads(a.threads); os.environ['ROBUST_NB_NO_PROGRESS'] = '1'
    from robust_nb.dad import generate_dad, attack_settings, DEFAULT_PRESET
    preset = a.preset or DEFAULT_PRESET
    s = attack_settings(preset)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    print('load before:', load(), flush=True)
    teacher, vq, x, y = build(a, dev)
    parts = {}
    bare = bare_fn(teacher, vq, x, y, s, a.chunk, dev, sync, parts)

    def gen():
        d = tempfile.mkdtemp()
        try:
            man = generate_dad(teacher, vq, (x, y), d, chunk_size=a.chunk, device=dev, progress_bar=False, preset=preset)
            sync()
        finally: shutil.rmtree(d)
        return man

    bare(); gen(); parts.clear()   # warm-up
    tb, tg, cb, cg = [], [], [], []
    for _ in range(a.repeats):     # interleaved: the machine is shared; CPU seconds of this process are less load-sensitive
        t0, c0 = time.perf_counter(), time.process_time(); bare(); tb.append(time.perf_counter() - t0); cb.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time(); man = gen(); tg.append(time.perf_counter() - t0); cg.append(time.process_time() - c0)
    b, g = statistics.median(tb), statistics.median(tg)
    print(f"device={dev} n={a.n} chunk={a.chunk} size={a.size}px teacher={a.teacher} vq={a.vq} preset={preset} "
          f"threads={torch.get_num_threads()} repeats={a.repeats} (medians)")
    print(f"bare ({' + '.join(parts)}): {a.n / b:8.2f} img/s ({b:.2f} s; runs {' '.join(f'{t:.2f}' for t in tb)})")
    print('  per run: ' + ', '.join(f"{k} {v / a.repeats:.2f} s" for k, v in parts.items()))
    print(f"generate_dad end to end: {a.n / g:8.2f} img/s ({g:.2f} s; runs {' '.join(f'{t:.2f}' for t in tg)}), kept fraction {man['kept_fraction']:.3f}")
    print(f"ratio (bare / generate) = {b / g:.3f}   (goal >= 0.8); on CPU seconds of this process "
          f"{statistics.median(cb):.2f} / {statistics.median(cg):.2f} = {statistics.median(cb) / statistics.median(cg):.3f}")
    print('load after:', load())
    return b / g

if __name__ == '__main__': main()
