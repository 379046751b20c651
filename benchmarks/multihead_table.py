"""Table-1-style benchmark of multi-head distillation (issue 14) on the embedded world, several seeds, mean ± std.

For each seed: D^a from `seed`, the student distilled from the embedded robust teacher with the paper's method (`ours`)
and its training ablations (`wo_kd`, `only_kd`, `single_teacher`, `combined_only`, see `robust_nb.losses.VARIANTS`), and
APT on the same tuned blocks. Every model is evaluated on the same fixed test sets: clean photo, the four natural
shifts and the 15 ImageNet-C corruptions at one severity. `ours` is also read with the inference ablations (eq. 6
without KLD, without U_mc, max-logit). F_correct per shift is `metrics.f_correct` of the selected head.

    python benchmarks/multihead_table.py --seeds 0 1 2 --out /tmp/mh_clip --student clip

Rows go to `DIR/rows.csv` as they finish (a rerun skips the (method, seed) rows already there); per-domain head
statistics of `ours` (mean U_mc and KL per head, each head's accuracy, share of inputs sent to the unclean head, and the
AUROC with which eq. 6's score log(U_c·KL_c) − log(U_u·KL_u) separates the domain's inputs from clean ones) to `DIR/heads.csv`;
the mean ± std table to `DIR/summary.csv` and `DIR/summary.md`; `DIR/routing.md`, what head selection could reach
with the trained heads at best (always clean, always unclean, the better head per domain: see `routing`); and, per input,
eq. 6's factors (U_mc and KL of each head, the selection, which head is right) to `DIR/scores.csv`, summarised per domain
as quantiles in `DIR/score_quantiles.md` (`score_quantiles`), with `disagreement_picks` and the per-input oracle
(`per_input_oracle`).
"""
from __future__ import annotations
import argparse, dataclasses, json, os, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch

from robust_nb import embedded
from robust_nb.synthetic import render
from robust_nb.data import embedded_suite
from robust_nb.corruptions import CORRUPTIONS, corrupt
from robust_nb.metrics import f_correct
from robust_nb.multihead import distill, mc_logits, select_head, head_scores, tuning_set, multihead_for, HEADS
from robust_nb.baselines import apt
from robust_nb.models import branch_stages
from robust_nb.losses import SINGLE_HEAD

NATURAL = ('v2', 'sketch', 'rendition', 'hard')
BASELINES = {'lp': 'LP', 'ft': 'FT', 'vpt': 'VPT (shallow, 5 tokens)', 'wise_ft': 'WiSE-FT (E2E, α = 0.5)'}
TRAIN_VARIANTS = ('ours', 'wo_kd', 'single_teacher', 'only_kd', 'combined_only')   # run in this order (APT right before ours)
INFER_RULES = ('ours', 'wo_kld', 'wo_umc', 'max_logit')

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--out', type=Path, required=True, help='output folder (rows.csv, heads.csv, summary.csv/.md)')
    p.add_argument('--student', default='clip', choices=['clip', 'clip-web', 'clip-ve', 'vit', 'resnet'],
                   help="clip: its zero-shot head (ZS setting); clip-ve: its image tower under a linear probe (the paper's "
                        "visual-evaluation setting, probe trained on LP_N clean photo/train images, seed 0, before any seed's run)")
    p.add_argument('--n-tune', type=int, default=3000, help='clean photos behind D^a (D^a has as many rows, a = 0.5)')
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--blocks', type=int, default=2,
                   help='blocks tuned (multi-head and APT); the heads take the suffix nearest 1/5 of the tuned part that still holds '
                        'a block unit (51%% for the zoo CLIP at 2 whole blocks, 35%% with --residual-stages)')
    p.add_argument('--residual-stages', action='store_true',
                   help="clip: split the tower at residual branches (attention, MLP) instead of whole blocks, so a head can be "
                        "one MLP branch (the ViT student always splits so); resnet: cut every block before its branch's last "
                        "conv (models.branch_stages), so a head can be that conv")
    p.add_argument('--n-eval', type=int, default=250, help='test images per domain')
    p.add_argument('--severity', type=int, default=3)
    p.add_argument('--mc', type=int, default=10, help='MC-dropout samples N')
    p.add_argument('--variants', nargs='+', default=list(TRAIN_VARIANTS), choices=TRAIN_VARIANTS)
    p.add_argument('--no-apt', action='store_true')
    p.add_argument('--baselines', nargs='*', default=[], choices=list(BASELINES),
                   help="Table 1's other baselines, trained on D^a's images and labels with the same epochs/batch/lr: "
                        "lp (linear probe), ft (full fine-tuning), vpt (5 shallow prompt tokens + classifier; ViT/CLIP only), "
                        "wise_ft (WiSE-FT end-to-end at alpha 0.5 of ft)")
    p.add_argument('--augment', default='augmix-noise2net', choices=['augmix-noise2net', 'imagenet-c'],
                   help="D^a's augmented copies: the paper's AugMix | Noise2Net halves (default), or 'imagenet-c', a "
                        "DIAGNOSTIC that draws them from the 15 test corruptions at severities 1-5 (it trains on the test "
                        "corruption family, so its corruption columns are not held out; the natural shifts still are)")
    p.add_argument('--teacher', type=json.loads, default={}, metavar='JSON',
                   help='config overrides of the embedded teacher, e.g. \'{"epochs": 12}\' (trained now unless cached; '
                        'default: the shipped teacher)')
    p.add_argument('--student-cfg', type=json.loads, default={}, metavar='JSON',
                   help='config overrides of the embedded student, e.g. a deeper CLIP: \'{"vision": {"image_size": 32, '
                        '"layers": 12, "width": 128, "patch_size": 8, "head_width": 32, "pool_type": "avg"}}\' (trained now '
                        'unless cached; default: the shipped zoo model)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--merge', type=Path, nargs='+', default=None,
                   help='only merge the rows.csv/heads.csv of these run folders (e.g. one per seed, run in parallel) into --out')
    return p.parse_args(argv)

LP_N, LP_EPOCHS = 5000, 10

def imagenet_c_augment(x, generator=None):
    "D^a copies from the test corruption family (the `--augment imagenet-c` diagnostic): one of 15 corruptions per chunk, severity 1-5."
    chunks = torch.arange(len(x)).chunk(len(CORRUPTIONS))
    order = torch.randperm(len(CORRUPTIONS), generator=generator)
    sev = torch.randint(1, 6, (len(chunks),), generator=generator)
    out = torch.empty_like(x)
    for k, idx in enumerate(chunks): out[idx] = corrupt(x[idx], CORRUPTIONS[order[k]], int(sev[k]), generator=generator)
    return out

AUGMENT = {'augmix-noise2net': None, 'imagenet-c': imagenet_c_augment}

def clip_ve():
    "The embedded CLIP's image tower + a linear classifier trained on frozen features of LP_N clean photos (the VE student)."
    from robust_nb.models import clip_classifier
    from robust_nb.baselines import linear_probe
    from robust_nb.synthetic import NUM_CLASSES
    clip = embedded.create('clip', progress=False)
    torch.manual_seed(0)        # before the linear head is built: torch seeds each process at random, so one VE student per run
    m = clip_classifier(embedded.CLIP_ARCH, head='linear', num_classes=NUM_CLASSES, clip=clip)
    return linear_probe(m, render('photo', LP_N, size=32, seed=0, split='train'), epochs=LP_EPOCHS, seed=0, progress=False).model

def load_models(name, residual_stages=False, teacher:dict|None=None, student:dict|None=None):
    if residual_stages and name not in ('clip', 'clip-web', 'resnet'):
        raise SystemExit(f"--residual-stages is for --student clip or resnet (vit already splits at branches), got {name}")
    if name == 'clip-ve': s = clip_ve()
    else:
        s = embedded.create(name, progress=False, **(student or {}))
        s = embedded.clip_zeroshot(s, residual_stages=residual_stages) if hasattr(s, 'encode_text') else s
        if residual_stages and name == 'resnet': s = branch_stages(s)
    return s.eval(), embedded.create('teacher', progress=False, **(teacher or {})).eval()

def eval_sets(n, severity):
    "The fixed test sets: domain -> (images, labels, is_shifted)."
    suite = embedded_suite(size=32, n=n, seed=0, corruptions=CORRUPTIONS, severities=(severity,), cache=True)
    out = {}
    for sh in suite:
        x = torch.stack([sh.dataset[i][0] for i in range(len(sh.dataset))])
        y = torch.as_tensor([int(sh.dataset[i][1]) for i in range(len(sh.dataset))])
        if sh.on_the_fly: x = corrupt(x, sh.corruption, sh.severity, generator=torch.Generator().manual_seed(0))
        name = 'clean' if sh.kind == 'clean' else (sh.corruption if sh.kind == 'corruption' else sh.name)
        out[name] = (x, y, sh.kind != 'clean')
    return out

@torch.no_grad()
def _batched(fn, x, bs=250): return torch.cat([fn(x[i:i + bs]) for i in range(0, len(x), bs)])

def _acc(logits, y): return 100 * logits.argmax(-1).eq(y).float().mean().item()

def _row(method, seed, acc:dict, fc:dict|None, cost:dict) -> dict:
    r = dict(method=method, seed=seed, **{f'acc_{k}': v for k, v in acc.items()})
    corr = [acc[c] for c in CORRUPTIONS]; nat = [acc[d] for d in NATURAL]
    r.update(nat_avg=np.mean(nat), corr_mean=np.mean(corr), avg_shifts=np.mean(nat + [np.mean(corr)]))
    if fc:
        r.update({f'fc_{k}': v for k, v in fc.items()})
        r['fc_shift_mean'] = np.mean([fc[d] for d in list(NATURAL) + list(CORRUPTIONS)])
    r.update(cost)
    return r

@torch.no_grad()
def eval_multihead(mh, sets, feats, n, rules):
    "Accuracy and F_correct per domain for each rule, plus per-domain head statistics (for the 'ours' rule)."
    acc = {r: {} for r in rules}; fc = {r: {} for r in rules}; stats = []; score = {}; per_input = []
    for d, (x, y, shifted) in sets.items():
        mc = torch.cat([mc_logits(mh, features=feats[d][i:i + 250], n=n, seed=0) for i in range(0, len(y), 250)], dim=2)
        _, u, kl = head_scores(mc)
        for r in rules:
            sel, lp = select_head(mc, r)
            acc[r][d] = _acc(lp, y)
            if r in INFER_RULES: fc[r][d] = f_correct(sel, torch.full_like(sel, shifted, dtype=torch.bool))
        sel, _ = select_head(mc, 'ours')
        pm = [mc[h].float().softmax(-1).mean(0) for h in range(3)]          # each head's MC-mean prediction
        hacc, right = [_acc(q, y) for q in pm], [q.argmax(-1).eq(y) for q in pm[:2]]
        per_input.append(pd.DataFrame(dict(domain=d, u_clean=u[0].numpy(), u_unclean=u[1].numpy(), kl_clean=kl[0].numpy(),
                                           kl_unclean=kl[1].numpy(), unclean_selected=sel.numpy().astype(bool),
                                           right_clean=right[0].numpy(), right_unclean=right[1].numpy())))
        score[d] = (u[0] * kl[0]).clamp_min(1e-30).log() - (u[1] * kl[1]).clamp_min(1e-30).log()   # > 0: eq. 6 takes unclean
        stats.append(dict(domain=d, shifted=shifted, **{f'umc_{h}': u[i].mean().item() for i, h in enumerate(HEADS)},
                          **{f'kl_{h}': kl[i].mean().item() for i, h in enumerate(HEADS[:2])},
                          **{f'acc_{h}': hacc[i] for i, h in enumerate(HEADS)}, frac_unclean=sel.float().mean().item()))
    for r in stats: r['auroc'] = auroc(score['clean'], score[r['domain']]) if r['shifted'] else float('nan')
    return acc, fc, stats, pd.concat(per_input, ignore_index=True)

def auroc(neg, pos) -> float:
    "P(score of a shifted input > score of a clean one) (ties count 1/2): how well eq. 6's score separates the two, at any threshold."
    return ((pos[:, None] > neg[None]).float().mean() + .5 * (pos[:, None] == neg[None]).float().mean()).item()

class Rows:
    "rows.csv, appended one (method, seed) row at a time; `has` tells a rerun what to skip."
    def __init__(self, path): self.path = path; self.df = pd.read_csv(path) if path.exists() else pd.DataFrame()
    def has(self, method, seed): return len(self.df) and ((self.df.method == method) & (self.df.seed == seed)).any()
    def add(self, rows):
        self.df = pd.concat([self.df, pd.DataFrame(rows)], ignore_index=True)
        tmp = self.path.with_suffix('.tmp'); self.df.to_csv(tmp, index=False, float_format='%.4f'); os.replace(tmp, self.path)

def _append_heads(path, stats, seed, method, float_format='%.5f'):
    df = pd.DataFrame(stats).assign(seed=seed, method=method)
    old = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if len(old): old = old[~((old.seed == seed) & (old.method == method))]
    pd.concat([old, df], ignore_index=True).to_csv(path, index=False, float_format=float_format)

KEY = ['acc_clean', 'nat_avg', 'corr_mean', 'avg_shifts', 'fc_clean', 'fc_shift_mean', 'train_ms_per_img', 'params_tuned']

def summarise(df, out, stem='summary'):
    cols = [c for c in df.columns if c not in ('method', 'seed')]
    g = df.groupby('method', sort=False)[cols]
    mean, std, n = g.mean(), g.std(ddof=1).fillna(0.), g.size()
    mean.assign(n_seeds=n).to_csv(out/f'{stem}_mean.csv', float_format='%.4f'); std.to_csv(out/f'{stem}_std.csv', float_format='%.4f')
    show = ['acc_clean', *[f'acc_{d}' for d in NATURAL], 'nat_avg', 'corr_mean', 'avg_shifts', 'fc_clean', 'fc_shift_mean',
            'train_ms_per_img', 'params_tuned']
    show = [c for c in show if c in mean.columns]
    def cell(m, c):
        v, s = mean.loc[m, c], std.loc[m, c]
        if pd.isna(v): return '–'
        if c.startswith('fc_'): return f'{v:.3f} ± {s:.3f}'
        if c == 'params_tuned': return f'{int(round(v)):,}'
        return f'{v:.1f} ± {s:.1f}'
    lines = ['| method | seeds | ' + ' | '.join(show) + ' |', '|---|---|' + '---|' * len(show)]
    lines += [f'| {m} | {n[m]} | ' + ' | '.join(cell(m, c) for c in show) + ' |' for m in mean.index]
    (out/f'{stem}.md').write_text('\n'.join(lines) + '\n')
    return '\n'.join(lines)

ROUTES = {'clean head only': ['acc_clean'], 'unclean head only': ['acc_unclean'],
          'better head per domain (oracle)': ['acc_clean', 'acc_unclean']}

def routing(heads:pd.DataFrame) -> pd.DataFrame:
    """What any head selection can reach with the heads `ours` trained, per seed, from `heads.csv` (each head's MC-mean
    accuracy per domain): always the clean head, always the unclean head, and an oracle that sends every input of a domain
    to that domain's better head. A diagnostic bound, not a method: eq. 6 routes per input and without labels."""
    rows = []
    for seed, h in heads[heads.method == 'ours'].groupby('seed'):
        h = h.set_index('domain')
        rows += [_row(f'routing: {k}', seed, h[cols].max(axis=1).to_dict(), None, {}) for k, cols in ROUTES.items()]
    return pd.DataFrame(rows)

def _rights(scores:pd.DataFrame) -> pd.DataFrame:
    "`scores` with boolean columns: either head right (`any_right`), only the unclean one, only the clean one."
    c, u = scores.right_clean.astype(bool), scores.right_unclean.astype(bool)
    return scores.assign(right_clean=c, right_unclean=u, any_right=c | u, only_unclean=u & ~c, only_clean=c & ~u)

def score_quantiles(scores:pd.DataFrame, q=(.1, .5, .9)) -> pd.DataFrame:
    """Per-domain distributions of eq. 6's factors over every input and seed of `scores.csv`: quantiles `q` of U_mc and
    KL for the clean and unclean heads, and how often each factor alone favours the unclean head (U_u < U_c, KL_u < KL_c),
    against how often their product does (eq. 6) and how often the unclean head is the one that is right."""
    g = scores.groupby('domain', sort=False)
    out = pd.DataFrame({f'{c} q{int(100 * p)}': g[c].quantile(p) for c in ('u_clean', 'u_unclean', 'kl_clean', 'kl_unclean') for p in q})
    s = _rights(scores).assign(u_fav=scores.u_unclean < scores.u_clean, kl_fav=scores.kl_unclean < scores.kl_clean).groupby('domain', sort=False)
    for c, name in (('u_fav', 'U favours unclean'), ('kl_fav', 'KL favours unclean'), ('unclean_selected', 'eq. 6 picks unclean'),
                    ('only_unclean', 'only unclean right'), ('only_clean', 'only clean right')):
        out[name] = s[c].mean()
    return out

def disagreement_picks(scores:pd.DataFrame) -> pd.Series:
    """On the inputs where exactly one head (clean or unclean) is right: their share, and how often eq. 6, U_mc alone and
    KL alone pick that head (0.5 = no better than a coin). Shifted domains only."""
    s = scores[scores.domain != 'clean']
    d = s[s.right_clean != s.right_unclean]
    picks = {'eq. 6': d.unclean_selected.astype(bool), 'U_mc alone': d.u_unclean < d.u_clean, 'KL alone': d.kl_unclean < d.kl_clean}
    return pd.Series({'share of shifted inputs': len(d) / max(len(s), 1),
                      **{f'{k} picks the right head': (v == d.right_unclean.astype(bool)).mean() for k, v in picks.items()}})

def per_input_oracle(scores:pd.DataFrame) -> pd.Series:
    """Accuracy (%) of each head and of a per-input oracle that takes whichever head is right, on the corruption mean and
    on the average over shifts (the 4 natural shifts and the corruption mean), and the corruption means of the
    one-head-right shares. A bound for any per-input selector, not a method."""
    g = 100 * _rights(scores).groupby('domain')[['right_clean', 'right_unclean', 'any_right', 'only_unclean', 'only_clean']].mean()
    corr = g.loc[[c for c in CORRUPTIONS if c in g.index]].mean()
    nat = [d for d in NATURAL if d in g.index]
    shifts = (g.loc[nat].sum() + corr) / (len(nat) + 1)
    return pd.Series({**{f'corr: {k}': corr[k] for k in g.columns}, **{f'avg shifts: {k}': shifts[k] for k in g.columns[:3]}})

def print_scores(out):
    "`out/score_quantiles.md` from `out/scores.csv` (if any), printed."
    if not (out/'scores.csv').exists(): return
    sc = pd.read_csv(out/'scores.csv')
    t = score_quantiles(sc[sc.method == 'ours'])
    fmt = lambda c, v: f'{v:.3g}' if ' q' in c else f'{v:.2f}'
    lines = ['| domain | ' + ' | '.join(t.columns) + ' |', '|---|' + '---|' * len(t.columns)]
    lines += [f'| {d} | ' + ' | '.join(fmt(c, t.loc[d, c]) for c in t.columns) + ' |' for d in t.index]
    dp = disagreement_picks(sc[sc.method == 'ours'])
    lines += ['', 'Shifted inputs on which exactly one head is right: ' + ', '.join(f'{k} {v:.3f}' for k, v in dp.items())]
    po = per_input_oracle(sc[sc.method == 'ours'])
    lines += ['', 'Per input (%): ' + ', '.join(f'{k} {v:.1f}' for k, v in po.items())]
    (out/'score_quantiles.md').write_text('\n'.join(lines) + '\n'); print('\n'.join(lines), flush=True)

def print_routing(out):
    "The routing table of `out/heads.csv` (if any) into `out/routing.md`, printed."
    if (out/'heads.csv').exists(): print(summarise(routing(pd.read_csv(out/'heads.csv')), out, 'routing'), flush=True)

def run_baselines(a, student, sets, rows, seed, data, kw):
    "The `--baselines` rows of one seed (skipping those already in rows.csv); WiSE-FT reuses this seed's FT model."
    from robust_nb.baselines import linear_probe, finetune, vpt, wise_ft
    ft = None
    for b in a.baselines:
        if rows.has(BASELINES[b], seed): continue
        t0 = time.perf_counter()
        try:
            if b == 'lp': r = linear_probe(student, (data().x, data().y), progress=False, **kw)
            elif b == 'vpt': r = vpt(student, (data().x, data().y), tokens=5, progress=False, **kw)
            else:                                                   # ft, wise_ft: one fine-tuning per seed
                if ft is None: ft = finetune(student, (data().x, data().y), progress=False, **kw)
                r = ft if b == 'ft' else dataclasses.replace(ft, model=wise_ft(student, ft.model, .5), history=[])
        except (TypeError, ValueError) as e: print(f'seed {seed} {b} skipped: {e}', flush=True); continue
        acc = {d: _acc(_batched(r.model, x), y) for d, (x, y, _) in sets.items()}
        rows.add([_row(BASELINES[b], seed, acc, None, dict(train_ms_per_img=r.ms_per_img, params_tuned=r.n_tuned,
                                                           train_wall_s=time.perf_counter() - t0))])
        print(f'seed {seed} {b}: {time.perf_counter() - t0:.0f} s', flush=True)

def main(argv=None):
    a = parse(argv); torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.merge:
        for f in ('rows.csv', 'heads.csv', 'scores.csv'):
            dfs = [pd.read_csv(d/f) for d in a.merge if (d/f).exists()]
            if not dfs: continue
            df = pd.concat(dfs, ignore_index=True)
            if f == 'rows.csv' and (df.method == 'APT').any():     # rows from before the fix: single-head ablations tune M_s + one head
                single = df.method.isin([f'train ablation: {v}' for v in SINGLE_HEAD])
                df.loc[single, 'params_tuned'] = df.loc[df.method == 'APT', 'params_tuned'].iloc[0]
            df.to_csv(a.out/f, index=False, float_format='%.5f')
        print(summarise(pd.read_csv(a.out/'rows.csv'), a.out)); print_routing(a.out); print_scores(a.out); return
    (a.out/'command.json').write_text(json.dumps(dict(argv=sys.argv, args={k: str(v) for k, v in vars(a).items()}), indent=1))
    t_all = time.perf_counter()
    if a.student_cfg and a.student == 'clip-ve': raise SystemExit('--student-cfg is for --student clip, vit or resnet')
    student, teacher = load_models(a.student, a.residual_stages, a.teacher, a.student_cfg)
    split, mh0 = multihead_for(student, blocks=a.blocks)
    print(f'student {a.student}: tuned {split.n_tuned:,} params = {split.frac_tuned:.1%}, heads {split.head_frac:.1%} of it '
          f'({split.head_blocks} block(s)); cut {split.cut}', flush=True)
    sets = eval_sets(a.n_eval, a.severity)
    feats = {d: _batched(mh0.features, x) for d, (x, _, _) in sets.items()}     # M_b is frozen and shared by every model
    rows = Rows(a.out/'rows.csv')
    for ref, m in (('student (original)', student), ('teacher (small, robust)', teacher)):
        for seed in a.seeds:                                            # seed-independent; repeated so every seed has the row
            if rows.has(ref, seed): continue
            acc = {d: _acc(_batched(m, x), y) for d, (x, y, _) in sets.items()}
            rows.add([_row(ref, seed, acc, None, dict(train_ms_per_img=0., params_tuned=0))])
    for seed in a.seeds:
        ts = None
        def data():
            nonlocal ts
            if ts is None: ts = tuning_set(*render('photo', a.n_tune, size=32, seed=seed + 1, split='train'), a=0.5, seed=seed,
                                           augment=AUGMENT[a.augment])
            return ts
        kw = dict(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=seed)
        for v in a.variants:
            if v == 'ours' and not a.no_apt and not rows.has('APT', seed):
                t0 = time.perf_counter()
                r = apt(student, (data().x, data().y), blocks=a.blocks, progress=False, **kw)
                acc = {d: _acc(_batched(r.model, x), y) for d, (x, y, _) in sets.items()}
                rows.add([_row('APT', seed, acc, None, dict(train_ms_per_img=r.ms_per_img, params_tuned=r.n_tuned,
                                                             train_wall_s=time.perf_counter() - t0))])
                print(f'seed {seed} APT: {time.perf_counter() - t0:.0f} s', flush=True)
            names = [f'multi-head ({r})' for r in INFER_RULES] if v == 'ours' else [f'train ablation: {v}']
            if all(rows.has(nm, seed) for nm in names): continue
            t0 = time.perf_counter()
            r = distill(student, teacher, data(), blocks=a.blocks, variant=v, progress=False, **kw)
            n_tuned = r.split.n_tuned if v in SINGLE_HEAD else sum(p.numel() for p in r.model.parameters() if p.requires_grad)
            cost = dict(train_ms_per_img=r.ms_per_img, params_tuned=n_tuned,                   # single head: M_s + one head
                        train_wall_s=time.perf_counter() - t0)
            rules = list(INFER_RULES) if v == 'ours' else (['combined'] if v in SINGLE_HEAD else ['ours'])
            if v in SINGLE_HEAD:                       # one head is trained: its deterministic (eval-mode) prediction, no MC
                r.model.eval()
                acc, fc = {'combined': {d: _acc(_batched(lambda f: r.model.forward_tuned(f)[2], feats[d]), y)
                                        for d, (_, y, _) in sets.items()}}, {}
            else: acc, fc, stats, scores = eval_multihead(r.model, sets, feats, a.mc, rules)
            if v == 'ours':
                rows.add([_row(f'multi-head ({ru})', seed, acc[ru], fc[ru], cost) for ru in INFER_RULES])
                _append_heads(a.out/'heads.csv', stats, seed, v)
                _append_heads(a.out/'scores.csv', scores.to_dict('records'), seed, v, '%.4g')
            else: rows.add([_row(names[0], seed, acc[rules[0]], fc.get(rules[0]) or None, cost)])
            print(f'seed {seed} {v}: {time.perf_counter() - t0:.0f} s', flush=True)
        run_baselines(a, student, sets, rows, seed, data, kw)
        print(summarise(rows.df, a.out), flush=True)
    print_routing(a.out); print_scores(a.out)
    print(f'wall {time.perf_counter() - t_all:.0f} s', flush=True)

if __name__ == '__main__': main()
