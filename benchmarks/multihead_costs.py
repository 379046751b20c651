"""Costs of multi-head uncertainty-aware distillation on the embedded student (`--arch resnet`, the default, or `vit`).

1. Training cost per image, frozen-backbone feature cache vs the naive uncached path (which runs M_b, the frozen student
   copy and the teacher at every step), both with the last `--blocks` (default 2, the library's default) tuned, measured
   in one run. The cached figure includes the one-off caching pass amortised over `--epochs` epochs; the steady-state
   per-epoch ratio is printed too.
   Goal: >= 5x cheaper.
2. Head-selection inference (eq. 6, N=10 MC-dropout samples per head, only dropout layers re-run) vs the plain student:
   FLOPs with `evaluate.count_flops` (attention counted: MHA fast path off, SDPA math kernel) and wall-clock latency.
   Goal: <= 5% FLOPs overhead (the paper reports 3%).

    python benchmarks/multihead_costs.py [--arch resnet|vit] [--n 512] [--epochs 10] [--blocks 2 | --frac F] [--threads 2]
    python benchmarks/multihead_costs.py --selection-only --blocks 2 [--arch vit]     # part 2 only, untrained heads
    python benchmarks/multihead_costs.py --selection-only --blocks 2 --branch-stages  # ResNet cut before each branch's last conv
    python benchmarks/multihead_costs.py --selection-only --blocks 2 --arch clip [--residual-stages]   # Table 1's student
    python benchmarks/multihead_costs.py --selection-only --frac 0.05 --arch open_clip:ViT-L-14 [--residual-stages]
                                                     # paper scale: a real architecture, randomly initialised, 224 px,
                                                     # 1000 classes (timm:NAME or open_clip:NAME; FLOPs only)

   Part 2 also prints the overhead against the student whose head section takes the same class-token shortcut as the
   MC path (ViT: per-token head stages after a class-token pool run on that token only), so the two shortcuts are not
   mixed up with the overhead.
"""
import argparse, os, time
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("ROBUST_NB_NO_PROGRESS", "1")
import torch
from robust_nb.evaluate import count_flops
from robust_nb.models import embedded_student, timm_classifier, branch_split
from robust_nb.models import split_model
from robust_nb.multihead import distill, tuning_set, Selected, MultiHead, _head_mc
from robust_nb.losses import multihead_loss


def small_teacher(n):
    try:
        from robust_nb.teacher import small_teacher as st
        return st(n)
    except ImportError: return timm_classifier("test_resnet", n)




def train_flops(st, te, split_kw, b=32):
    "FLOPs of one training step per image (forward + backward), naive vs cached: machine-independent."
    mh = MultiHead(split_model(st, **split_kw)).train()
    x, y, aug = torch.rand(b, 3, 32, 32), torch.arange(b) % 10, torch.arange(b) % 2 == 0
    def naive():
        with torch.no_grad(): tc, ta = st(x), te(x)
        multihead_loss(mh(x), y, aug, tc, ta).backward()
    f = mh.features(x); tc, ta = torch.randn(b, 10), torch.randn(b, 10)
    def cached(): multihead_loss(mh.forward_tuned(f), y, aug, tc, ta).backward()
    return count_flops(naive) / b, count_flops(cached) / b


def latency(f, x, reps=5):
    f(x); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(x); ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def paper_scale(arch:str):
    """The student of `--arch` for FLOPs only, and its image size: `clip` (the zoo's, zero-shot, 32 px), or a randomly
    initialised real architecture (`timm:NAME`, `open_clip:NAME`) with 1000 classes."""
    if arch == "clip":           # the zoo's CLIP under its zero-shot head: the student of the multi-head Table 1
        from robust_nb.embedded import clip_zeroshot
        st = clip_zeroshot()
        return st.eval(), 32
    lib, name = arch.split(":", 1)
    if lib == "timm":
        st = timm_classifier(name, 1000)
    elif lib == "open_clip":     # a linear head costs what the zero-shot head costs (one D x 1000 product) without the text tower
        from robust_nb.models import clip_classifier
        st = clip_classifier(name, head="linear", num_classes=1000)
    else: raise SystemExit(f"--arch {arch!r}: use resnet, vit, clip, timm:NAME or open_clip:NAME")
    return st.eval(), st.prep.size[-1] if getattr(st.prep, "size", None) else 224


def selection_costs(st, mh, batch, size=32, timing=True):
    "Head selection (eq. 6, N=10) vs the plain student and vs the student with the same class-token shortcut: FLOPs, latency."
    sel, x = Selected(mh.eval(), n=10), torch.rand(batch, 3, size, size)
    def shortcut_student(x):
        z = mh.shared(mh.features(x))
        return _head_mc(mh.heads[0], z, 1, stochastic=False)
    with torch.no_grad():
        f0, f1, f2 = count_flops(st, x), count_flops(sel, x), count_flops(shortcut_student, x)
    print(f"inference FLOPs/img: student {f0 / batch / 1e6:.2f} M | multi-head + eq. 6 (N=10) {f1 / batch / 1e6:.2f} M "
          f"| overhead {100 * (f1 / f0 - 1):+.2f}%   goal <= 5%")
    print(f"  vs the student with the same class-token shortcut ({f2 / batch / 1e6:.2f} M): {100 * (f1 / f2 - 1):+.2f}%")
    if not timing: return
    with torch.no_grad(): l0, l1 = latency(st, x), latency(sel, x)
    print(f"inference latency (batch {batch}): student {1000 * l0:.1f} ms | multi-head {1000 * l1:.1f} ms "
          f"| overhead {100 * (l1 / l0 - 1):+.1f}%")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512); p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--frac", type=float, default=None, help="tune this fraction instead of --blocks"); p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=2, help="tune the last BLOCKS blocks (default 2, as the library)")
    p.add_argument("--selection-only", action="store_true", help="only part 2, on untrained heads (FLOPs do not depend on weights)")
    p.add_argument("--batch", type=int, default=None, help="default 256 (embedded), 1 (timm:/open_clip:, FLOPs only)")
    p.add_argument("--arch", default="resnet", help="resnet | vit (untrained embedded students) | clip (the zoo's CLIP, zero-shot) | timm:NAME | open_clip:NAME (random init)")
    p.add_argument("--branch-stages", "--residual-stages", action="store_true",
                   help="cut the student at every residual branch (models.branch_split: transformer attention | MLP, ResNet "
                        "blocks before their last conv), so a head can be the last branch alone")
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    split_kw = dict(frac=a.frac) if a.frac is not None else dict(blocks=a.blocks)
    if ":" in a.arch or a.arch == "clip":
        if not a.selection_only: p.error("clip, timm: and open_clip: architectures are for --selection-only (FLOPs of head selection)")
        st, size = paper_scale(a.arch)
        if a.branch_stages: st = branch_split(st)
        sp = split_model(st, **split_kw)
        print(f"student {a.arch} ({'the zoo weights, 32 px, 10 classes' if a.arch == 'clip' else f'random init, {size} px, 1000 classes'}): {sp}")
        selection_costs(st, MultiHead(sp), a.batch or 1, size, timing=False); raise SystemExit
    if a.arch not in ("resnet", "vit"): p.error(f"--arch {a.arch!r}: use resnet, vit, clip, timm:NAME or open_clip:NAME")
    a.batch = a.batch or 256
    st, te = embedded_student(10, arch=a.arch).eval(), small_teacher(10).eval()
    if a.branch_stages: st = branch_split(st)
    if a.selection_only:
        sp = split_model(st, **split_kw)
        print(f"student {a.arch}: {sp}")
        selection_costs(st, MultiHead(sp), a.batch); raise SystemExit
    ts = tuning_set(torch.rand(a.n, 3, 32, 32), torch.arange(a.n) % 10, a=1.)
    kw = dict(**split_kw, batch_size=a.batch, progress=False)
    # naive: one epoch is enough to measure its steady per-image cost
    naive = distill(st, te, ts, cache=False, epochs=1, **kw)
    cached = distill(st, te, ts, cache=True, epochs=a.epochs, **kw)
    naive_ms = 1000 * naive.train_s / naive.n_seen
    steady_ms = 1000 * cached.train_s / cached.n_seen
    print(f"student {a.arch}: {naive.split} ({split_kw})")
    print(f"train ms/img: naive uncached {naive_ms:.3f} | cached steady {steady_ms:.3f} | cached incl. caching over "
          f"{a.epochs} epochs {cached.ms_per_img:.3f}")
    print(f"training cost ratio (naive / cached incl. caching): {naive_ms / cached.ms_per_img:.1f}x "
          f"(steady state {naive_ms / steady_ms:.1f}x)   goal >= 5x")
    fn, fc_ = train_flops(st, te, split_kw)
    print(f"train FLOPs/img (fwd+bwd, excluding the one-off caching pass): naive {fn / 1e6:.1f} M | cached {fc_ / 1e6:.1f} M "
          f"| ratio {fn / fc_:.1f}x")
    selection_costs(st, cached.model, a.batch)
