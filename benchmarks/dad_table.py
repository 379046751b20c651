"""The DAD paper's Table 3 on the embedded benchmark, over several seeds: one CSV row per (method, seed).

Methods: Table 3's distillation objectives (CE, KD, DIST, ARD, RSLAD, DAD and its ablation DAD-as-augmentation), DAT and
DAT+DAD, and the adversarial-training baselines of Tables 1, 2 and 7, AdvProp and Pyramid AT, at the settings stated in
the DAD notebook (`dad.METHODS`; AdvProp: PGD ε 4/255, 5 steps of 1/255 through auxiliary BatchNorms; Pyramid AT:
grids 7/14/every pixel, multipliers 20/10/1, ε 3/255, 5 steps of 0.5/255 toward random targets).

    python benchmarks/dad_table.py --seeds 0 1 2 --out DIR [--preset linf] [--teacher clip] [--n 1000 --size 32 --epochs 12 --n-eval 500]

writes DIR/dad_table.csv with the columns method, seed, photo, each natural shift (v2, sketch, rendition, hard),
corruptions (mean top-1 over the ImageNet-C corruptions at --severities), avg shifts, kept_fraction (of the DAD samples
the method trains on; empty for methods that use none) and train_s (seconds inside `distil`; the teacher's logits are
precomputed once per seed by `DADPairs`, outside that time). All accuracies are top-1 in percent.

Protocol: teacher φ (--teacher clip, the default) is the embedded CLIP zero-shot, built the way a user builds CLIP
ViT-L/14: `dad.as_teacher(models.clip_classifier(<open_clip arch>, head='zeroshot', class_names=synthetic.CLASSES))`, with
the trained `embedded.create('clip')` passed as `clip=` (its patch conv is a ResNet trunk that `open_clip.create_model`
cannot build); CLIP's mean/std and the resize to its 32-px input are inside the classifier (`models.Prep`). --teacher
foundation is the earlier small CNN trained on photo+sketch+rendition (`embedded.create('foundation')`). Q =
`embedded.create('vq')` (convolutional, trained at --vq-size px, applied at --size). Teacher and Q are fixed across seeds;
students are `models.small_cnn` trained from scratch on --n photo/train images with `dad.distil` (AdamW, --lr,
--batch-size, --epochs). The seed sets the student's initialisation, the batch order and the random starts of the DAD
generation (attack preset --preset, see `dad.ATTACK_PRESETS`).

Training cost alone: `--cost` trains one epoch of each method (no evaluation), --repeats times interleaved, and writes
DIR/cost.csv with the median seconds per epoch and the ratio to CE (the DAD paper's Table 7 measure, with DAD's generation
excluded as it is done once, offline):

    python benchmarks/dad_table.py --cost --out DIR --methods ce dad dat advprop pyramid_at --n 512 --threads 1

Resumable: each finished row is written at once (atomically), trained students are kept under DIR/students, DAD samples
under DIR/dad_<preset>_seed<seed>; a re-run skips what exists. A re-run with other settings into the same DIR is refused.
"""
import argparse, json, time
from pathlib import Path
import pandas as pd
import torch

METHODS = ['ce', 'kd', 'dist', 'ard', 'rslad', 'dat', 'dat+dad', 'dad_aug', 'dad', 'advprop', 'pyramid_at']
USES_DAD = {'ard', 'rslad', 'dat+dad', 'dad_aug', 'dad', 'vqgan_sample'}
NATURAL = ['v2', 'sketch', 'rendition', 'hard']
TEACHERS = ('clip', 'foundation')
COLUMNS = ['method', 'seed', 'photo', *NATURAL, 'corruptions', 'avg shifts', 'kept_fraction', 'train_s']


def parse(argv=None):
    from robust_nb.dad import ATTACK_PRESETS, DEFAULT_PRESET
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--out', required=True, help='output folder (resumes if it exists)')
    p.add_argument('--methods', nargs='+', default=METHODS, help=f"default: {' '.join(METHODS)}")
    p.add_argument('--preset', default=DEFAULT_PRESET, choices=sorted(ATTACK_PRESETS), help='DAD attack preset')
    p.add_argument('--n', type=int, default=1000, help='photo/train images the students see')
    p.add_argument('--size', type=int, default=32, help='image size of data and students (the clip teacher resizes to its own 32 px)')
    p.add_argument('--teacher', default='clip', choices=TEACHERS, help='foundation teacher: the embedded CLIP zero-shot, or the small CNN foundation')
    p.add_argument('--vq-size', type=int, default=16, help='image size Q is trained at (16: the cached/shipped `vq`)')
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--n-eval', type=int, default=500, help='test images per shift')
    p.add_argument('--severities', type=int, nargs='+', default=[3])
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--cost', action='store_true', help='only time one training epoch per method (DIR/cost.csv)')
    p.add_argument('--repeats', type=int, default=3, help='--cost: interleaved repeats, the median is kept')
    return p.parse_args(argv)


def check_config(out:Path, a, **extra) -> dict:
    """Write DIR/config.json, or refuse when it holds other settings (seeds and methods may grow). `extra`: further
    settings to record, such as the weights keys of the teacher and Q (so rows made with other shipped weights are refused)."""
    cfg = {k: v for k, v in vars(a).items() if k not in ('seeds', 'methods', 'out', 'threads', 'cost', 'repeats')} | extra
    p = out / 'config.json'
    if p.exists():
        old = json.loads(p.read_text())
        diff = {k: (old.get(k), v) for k, v in cfg.items() if old.get(k) != v}
        if diff: raise SystemExit(f"{out} holds a table made with other settings {diff} (old, new); use a new --out or the same settings")
    else: p.write_text(json.dumps(cfg, indent=1))
    return cfg


def load_rows(csv:Path) -> pd.DataFrame:
    return pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)


def save_rows(df:pd.DataFrame, csv:Path):
    from robust_nb.core import atomic_write_bytes
    atomic_write_bytes(csv, df[COLUMNS].to_csv(index=False).encode())


def summary_row(res, method, seed, kept, secs) -> dict:
    "One CSV row from an `evaluate` result: photo, the natural shifts, the corruption mean and avg shifts, in %."
    s = res.summary()
    return dict(method=method, seed=seed, photo=s.get('photo'), **{k: s.get(k) for k in NATURAL}, corruptions=s.get('corruptions'),
                **{'avg shifts': s.get('avg shifts')}, kept_fraction=kept, train_s=round(secs, 2))


def summarise(rows:pd.DataFrame) -> pd.DataFrame:
    "Mean ± std over seeds per method (accuracies in %), the seeds counted, kept fraction, and train_s relative to CE."
    acc = ['photo', *NATURAL, 'corruptions', 'avg shifts']
    g = rows.groupby('method', sort=False)
    out = pd.DataFrame({c: g[c].mean().round(1).astype(str) + ' ± ' + g[c].std(ddof=1).fillna(0).round(1).astype(str) for c in acc})
    out['seeds'] = g['seed'].nunique()
    out['kept_fraction'] = g['kept_fraction'].mean().round(3)
    ce = g['train_s'].mean().get('ce')
    out['cost vs CE'] = (g['train_s'].mean() / ce).round(2) if ce else float('nan')
    return out.reset_index()

def teacher(name:str, size:int=32):
    """The foundation teacher φ as a frozen `dad.Teacher` taking [0,1] images. 'clip': the embedded CLIP through the open_clip
    path of any CLIP (`models.clip_classifier`, zero-shot head over `synthetic.CLASSES` with the OpenAI prompt ensemble,
    CLIP's normalisation inside); 'foundation': the small CNN of `embedded.create('foundation')` at `size`."""
    from robust_nb.embedded import create, CLIP_ARCH
    from robust_nb.models import clip_classifier
    from robust_nb.synthetic import CLASSES
    from robust_nb.dad import as_teacher
    if name == 'clip': return as_teacher(clip_classifier(CLIP_ARCH, head='zeroshot', class_names=list(CLASSES), clip=create('clip')))
    if name == 'foundation': return as_teacher(create('foundation', **({} if size == 16 else dict(size=size))))
    raise ValueError(f"unknown teacher {name!r}; valid: {', '.join(TEACHERS)}")

def cost(a, phi, vq, x, y, out:Path) -> pd.DataFrame:
    "Median seconds of one training epoch per method over `a.repeats` interleaved repeats, and the ratio to CE; DIR/cost.csv."
    import statistics
    from robust_nb.models import small_cnn
    from robust_nb.synthetic import NUM_CLASSES
    from robust_nb.dad import generate_dad, DADShards, DADPairs, distil
    seed = a.seeds[0]
    d = out / f'dad_{a.preset}_seed{seed}'
    man = generate_dad(phi, vq, (x, y), d, preset=a.preset, seed=seed, progress_bar=False)
    pairs = DADPairs((x, y), DADShards(d), teacher=phi)
    secs = {m: [] for m in a.methods}
    for r in range(a.repeats + 1):                       # repeat 0 is a warm-up, not kept
        for m in a.methods:
            torch.manual_seed(seed); student = small_cnn(NUM_CLASSES)
            t0 = time.perf_counter()
            distil(student, m, pairs, teacher=phi, vq=vq, epochs=1, batch_size=a.batch_size, lr=a.lr, seed=seed, progress=False)
            if r: secs[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(v) for m, v in secs.items()}
    ce = med.get('ce')
    df = pd.DataFrame([dict(method=m, epoch_s=round(med[m], 3), runs=' '.join(f'{t:.3f}' for t in secs[m]),
                            vs_ce=round(med[m] / ce, 2) if ce else None) for m in a.methods])
    (out / 'cost.csv').write_text(df.to_csv(index=False))
    print(f"one epoch of {len(x)} images at {a.size} px, batch {a.batch_size}, torch threads {torch.get_num_threads()}, "
          f"median of {a.repeats}; DAD kept fraction {man['kept_fraction']:.3f}")
    print(df.to_string(index=False))
    return df

def main(argv=None):
    a = parse(argv)
    if a.threads: torch.set_num_threads(a.threads)
    from robust_nb.synthetic import render, NUM_CLASSES
    from robust_nb.models import small_cnn
    from robust_nb.embedded import create, weights_key
    from robust_nb.data import embedded_suite
    from robust_nb.evaluate import evaluate
    from robust_nb.core import safe_load, atomic_save
    from robust_nb.dad import generate_dad, DADShards, DADPairs, distil, METHODS as REGISTERED
    bad = set(a.methods) - set(REGISTERED)
    if bad: raise SystemExit(f"unknown methods {sorted(bad)}; valid: {', '.join(REGISTERED)}")
    out = Path(a.out); (out / 'students').mkdir(parents=True, exist_ok=True)
    vq_kw = {} if a.vq_size == 16 else dict(size=a.vq_size)
    check_config(out, a, teacher_weights=weights_key('clip') if a.teacher == 'clip' else weights_key('foundation', **({} if a.size == 16 else dict(size=a.size))),
                 vq_weights=weights_key('vq', **vq_kw))
    csv = out / 'dad_table.csv'; rows = load_rows(csv)
    done = set(zip(rows['method'], rows['seed'].astype(int)))
    phi, vq = teacher(a.teacher, a.size), create('vq', **vq_kw)
    x, y = render('photo', a.n, size=a.size, seed=0, split='train')
    if a.cost: return cost(a, phi, vq, x, y, out)
    suite = embedded_suite(size=a.size, n=a.n_eval, severities=tuple(a.severities))
    for seed in a.seeds:
        todo = [m for m in a.methods if (m, seed) not in done]
        if not todo: continue
        d = out / f'dad_{a.preset}_seed{seed}'
        man = generate_dad(phi, vq, (x, y), d, preset=a.preset, seed=seed, progress_bar=False)
        pairs = DADPairs((x, y), DADShards(d), teacher=phi)
        for m in todo:
            p = out / 'students' / f'{m}_seed{seed}.pt'
            torch.manual_seed(seed); student = small_cnn(NUM_CLASSES)
            secs_p = p.with_suffix('.json')
            if p.exists(): student.load_state_dict(safe_load(p)); secs = json.loads(secs_p.read_text())['train_s']
            else:
                t0 = time.perf_counter()
                distil(student, m, pairs, teacher=phi, vq=vq, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=seed, progress=False)
                secs = time.perf_counter() - t0
                atomic_save(student.state_dict(), p); secs_p.write_text(json.dumps(dict(train_s=secs)))
            res = evaluate(student.eval(), suite, baseline=None, cache=False, progress=False, name=m)
            kept = man['kept_fraction'] if m in USES_DAD else None
            rows = pd.concat([rows, pd.DataFrame([summary_row(res, m, seed, kept, secs)])], ignore_index=True)
            save_rows(rows, csv)
            print(f"seed {seed} {m:8s} avg shifts {rows.iloc[-1]['avg shifts']:.1f}  train {secs:.1f} s", flush=True)
    if len(rows):
        summ = summarise(rows)
        save_summary = out / 'dad_table_summary.csv'; save_summary.write_text(summ.to_csv(index=False))
        print(summ.to_string(index=False))
    print(f"{len(rows)} rows in {csv}")
    return rows


if __name__ == '__main__':
    main()
