"""Throughput of DAD generation (`robust_nb.dad.generate_dad`) against its bare compute.

    python benchmarks/dad_generate.py [--n 2048] [--chunk 256] [--size 16] [--device cpu] [--repeats 3]

Bare cost per chunk = teacher forward+backward (the one-step attack) + VQ encode/decode + teacher forward (the
correctness check), measured in the same run on the same chunks. `generate_dad` adds data loading, 8-bit quantisation,
the filter, safetensors serialisation, atomic writes and the manifest. Goal: ratio = bare time / generate time >= 0.8.
"""
import argparse, os, shutil, tempfile, time
import torch, torch.nn.functional as F

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--n', type=int, default=2048); p.add_argument('--chunk', type=int, default=256)
    p.add_argument('--size', type=int, default=16); p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--repeats', type=int, default=3); p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads); os.environ['ROBUST_NB_NO_PROGRESS'] = '1'
    from robust_nb.dad import generate_dad, Teacher, small_cnn
    from robust_nb.vqgan import VQDiscretiser, vq_model
    from robust_nb.synthetic import render, NUM_CLASSES
    dev = torch.device(a.device)
    torch.manual_seed(0)
    teacher = Teacher(small_cnn(NUM_CLASSES)).to(dev)   # the embedded zoo's 'foundation' architecture (robust_nb.embedded)
    vq = VQDiscretiser(vq_model('tiny'), grad='none').to(dev).eval()
    x, y = render('photo', a.n, size=a.size, split='train')
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)

    def bare():
        for i in range(0, a.n, a.chunk):
            xb, yb = x[i:i + a.chunk].to(dev), y[i:i + a.chunk].to(dev)
            xa = xb.clone().requires_grad_(True)
            g, = torch.autograd.grad(F.cross_entropy(teacher(xa), yb), xa)
            with torch.no_grad():
                xa = (xb + 0.1 * g.sign()).clamp(0, 1)
                teacher(vq(xa)).argmax(1)
        sync()

    def gen():
        d = tempfile.mkdtemp()
        try:
            man = generate_dad(teacher, vq, (x, y), d, chunk_size=a.chunk, device=dev, progress_bar=False)
            sync()
        finally: shutil.rmtree(d)
        return man

    bare(); gen()   # warm-up
    tb, tg = [], []
    for _ in range(a.repeats):   # interleaved, best of `repeats`: the machine is shared
        t0 = time.perf_counter(); bare(); tb.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); man = gen(); tg.append(time.perf_counter() - t0)
    b, g = min(tb), min(tg)
    print(f"device={dev} n={a.n} chunk={a.chunk} size={a.size}px threads={a.threads}")
    print(f"bare teacher fwd+bwd + VQ + check: {a.n / b:8.1f} img/s ({b:.2f} s)")
    print(f"generate_dad end to end:           {a.n / g:8.1f} img/s ({g:.2f} s), kept fraction {man['kept_fraction']:.3f}")
    print(f"ratio (bare / generate) = {b / g:.3f}   (goal >= 0.8)")

if __name__ == '__main__': main()
