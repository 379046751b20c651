"""benchmarks/multihead_table.py, which makes the published multi-head tables: eq. 6's AUROC by hand, and a tiny run
(rows, head statistics, resume, merge) on the shipped zoo."""
import math, sys
from pathlib import Path
import pandas as pd, pytest, torch

sys.path.insert(0, str(Path(__file__).parents[1]/'benchmarks'))
import multihead_table as T

def test_auroc_by_hand():
    "P(shifted score > clean score), ties 1/2: pairs (1,0) (1,1) (2,0) (2,1) → (1 + .5 + 1 + 1) / 4."
    assert T.auroc(torch.tensor([0., 1.]), torch.tensor([1., 2.])) == pytest.approx(0.875)
    assert T.auroc(torch.tensor([0., 1.]), torch.tensor([5., 6.])) == 1.0
    assert T.auroc(torch.tensor([3., 3.]), torch.tensor([3.])) == 0.5

def test_tiny_run_resumes_and_merges(tmp_path, capsys):
    out = tmp_path/'s0'
    args = ['--seeds', '0', '--out', str(out), '--student', 'clip', '--n-tune', '32', '--epochs', '1', '--n-eval', '4',
            '--variants', 'ours', '--mc', '2', '--threads', '1', '--baselines', 'lp', 'ft']
    T.main(args)
    rows = pd.read_csv(out/'rows.csv')
    assert {'student (original)', 'teacher (small, robust)', 'APT', 'multi-head (ours)', 'multi-head (wo_kld)', 'FT'} <= set(rows.method)
    assert 'LP' not in set(rows.method) and 'seed 0 lp skipped' in capsys.readouterr().out   # no linear layer in a zero-shot head
    ours = rows[rows.method == 'multi-head (ours)'].iloc[0]
    assert 0 <= ours.fc_clean <= 1 and 0 <= ours.fc_shift_mean <= 1 and ours.params_tuned > rows[rows.method == 'APT'].params_tuned.iloc[0]
    heads = pd.read_csv(out/'heads.csv')
    assert math.isnan(heads.set_index('domain').auroc['clean']) and heads[heads.shifted].auroc.between(0, 1).all()
    sc = pd.read_csv(out/'scores.csv')                                  # eq. 6's factors per input: 4 test images x 20 domains
    assert len(sc) == 4 * (1 + len(T.NATURAL) + len(T.CORRUPTIONS)) and (sc[['u_clean', 'kl_unclean']] >= 0).all().all()
    assert '| clean |' in (out/'score_quantiles.md').read_text()
    T.main(args)                                                        # a rerun skips every row already there
    assert len(pd.read_csv(out/'rows.csv')) == len(rows)
    T.main(['--out', str(tmp_path/'all'), '--merge', str(out)])
    assert '| multi-head (ours) | 1 |' in (tmp_path/'all'/'summary.md').read_text()
    assert '| routing: better head per domain (oracle) | 1 |' in (tmp_path/'all'/'routing.md').read_text()

def test_score_quantiles_by_hand():
    "Per domain: quantiles of each factor, and the share of inputs on which U, KL, eq. 6 favour the unclean head."
    sc = pd.DataFrame(dict(domain=['a'] * 4, u_clean=[1., 2, 3, 4], u_unclean=[2., 1, 1, 1], kl_clean=[.1, .2, .3, .4],
                           kl_unclean=[.2, .2, .2, .2], unclean_selected=[False, True, True, True],
                           right_clean=[True, True, False, False], right_unclean=[True, False, True, False]))
    t = T.score_quantiles(sc, q=(.5,)).loc['a']
    assert t['u_clean q50'] == 2.5 and t['kl_unclean q50'] == pytest.approx(.2)
    assert (t['U favours unclean'], t['KL favours unclean'], t['eq. 6 picks unclean']) == (.75, .5, .75)
    assert (t['only unclean right'], t['only clean right']) == (.25, .25)
    dp = T.disagreement_picks(sc.assign(domain='fog'))                   # rows 1, 2 have one right head: clean, then unclean
    assert dp['share of shifted inputs'] == .5 and dp['eq. 6 picks the right head'] == .5       # picks unclean on both
    po = T.per_input_oracle(sc.assign(domain='fog'))                     # per input: either head right on rows 0-2
    assert (po['corr: right_clean'], po['corr: right_unclean'], po['corr: any_right']) == (50., 50., 75.)
    assert (po['corr: only_unclean'], po['corr: only_clean']) == (25., 25.) and po['avg shifts: any_right'] == 75.
    assert dp['U_mc alone picks the right head'] == .5 and dp['KL alone picks the right head'] == 1.   # KL: clean, then unclean

def test_routing_bound_by_hand():
    "The routing bound takes each domain's better head: avg_shifts = mean(4 natural shifts, corruption mean), by hand."
    doms = ['clean', *T.NATURAL, *T.CORRUPTIONS]
    h = pd.DataFrame(dict(domain=doms, method='ours', seed=0, acc_clean=[90.] + [60.] * 4 + [70.] * 15,
                          acc_unclean=[80.] + [50, 70, 50, 70] + [70.] * 14 + [85.]))
    r = T.routing(pd.concat([h, h.assign(method='wo_kd', acc_clean=0.)])).set_index('method')   # only `ours` counts
    assert list(r.index) == [f'routing: {k}' for k in T.ROUTES] and (r.seed == 0).all()
    best = r.loc['routing: better head per domain (oracle)']
    assert best.acc_clean == 90 and best.nat_avg == 65 and best.corr_mean == pytest.approx(71)
    assert best.avg_shifts == pytest.approx((60 + 70 + 60 + 70 + 71) / 5)
    assert r.loc['routing: unclean head only'].acc_clean == 80 and r.loc['routing: clean head only'].corr_mean == 70

def test_teacher_variant(monkeypatch, tmp_path):
    "--teacher JSON: the teacher is the embedded one with those config overrides (trained here: 32 images, 1 epoch)."
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path))
    from robust_nb.models import small_cnn
    a = T.parse(['--out', str(tmp_path), '--teacher', '{"width": 8, "n": 32, "epochs": 1}'])
    _, teacher = T.load_models('resnet', teacher=a.teacher)
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(teacher) == n(small_cnn(10, width=8)) < n(T.load_models('resnet')[1])
    with pytest.raises(SystemExit): T.parse(['--out', str(tmp_path), '--teacher', '{width: 8}'])

def test_clip_ve_student_does_not_depend_on_the_process_rng(monkeypatch):
    "torch seeds every process at random: the VE student (linear head + probe) must be seeded before its head is built."
    monkeypatch.setattr(T, 'LP_N', 16); monkeypatch.setattr(T, 'LP_EPOCHS', 1)
    torch.manual_seed(1); a = T.clip_ve().stages[-1].fc.weight
    torch.manual_seed(2); torch.rand(7); b = T.clip_ve().stages[-1].fc.weight
    assert torch.equal(a, b)

def test_imagenet_c_augment_uses_every_test_corruption():
    "The --augment imagenet-c diagnostic: each of the 15 chunks carries a different test corruption, reproducibly, in range."
    from robust_nb.corruptions import CORRUPTIONS, corrupt
    x = torch.rand(30, 3, 32, 32)
    a, b = (T.imagenet_c_augment(x, generator=torch.Generator().manual_seed(0)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1 and not torch.equal(a, x)
    g = torch.Generator().manual_seed(0)
    order, sev = torch.randperm(15, generator=g), torch.randint(1, 6, (15,), generator=g)
    k = int((order == CORRUPTIONS.index('contrast')).nonzero())            # chunk k (rows 2k, 2k+1) got contrast
    assert torch.allclose(a[2 * k:2 * k + 2], corrupt(x[2 * k:2 * k + 2], 'contrast', int(sev[k])))   # deterministic corruption
    assert T.AUGMENT['augmix-noise2net'] is None                          # the default: tuning_set's AugMix | Noise2Net
