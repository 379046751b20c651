import sys, types, json
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from robust_nb.data import Shift, Suite
from robust_nb import metrics as M
from robust_nb.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
from robust_nb.evaluate import (evaluate, evaluate_shift, Results, SHIFT_COLUMNS, model_fingerprint, shift_fingerprint,
                                count_params, flops, latency, train_ms_per_img)

K = 4


class Labelled(torch.utils.data.Dataset):
    "Images whose first pixel encodes the label (label/10); the rest is a fixed pattern."
    def __init__(self, n, offset=0): self.n, self.offset = n, offset
    def __len__(self): return self.n
    def __getitem__(self, i):
        y = (i + self.offset) % K
        x = torch.full((3, 8, 8), .5); x[0, 0, 0] = y / 10
        return x, y
    def __repr__(self): return f"Labelled({self.n}, {self.offset})"


class Oracle(nn.Module):
    "Reads the label back from pixel (0,0,0); `calls` counts images seen."
    def __init__(self, k=K):
        super().__init__(); self.k = k; self.scale = nn.Parameter(torch.tensor(3.)); self._calls = 0
    # counters live in `_` attributes: public plain attributes are settings and part of the model fingerprint
    calls = property(lambda self: self._calls, lambda self, v: setattr(self, '_calls', v))
    def forward(self, x):
        self.calls += len(x)
        y = (x[:, 0, 0, 0] * 10).round().long().clamp(0, self.k - 1)
        return torch.nn.functional.one_hot(y, self.k).float() * self.scale


def fake_corruptions(monkeypatch, calls=None):
    "A stand-in for robust_nb.corruptions following the contract: corrupt(x, name, severity, generator)."
    mod = types.ModuleType('robust_nb.corruptions')
    mod.CORRUPTIONS = ('gaussian_noise', 'fog'); mod.EXTRA_CORRUPTIONS = ()
    def corrupt(x, name, severity, generator=None):
        if calls is not None: calls.append((name, severity))
        # corrupt the label pixel of a random subset whose size grows with severity
        m = torch.rand(len(x), generator=generator, device=x.device) < severity / 6
        x = x.clone(); x[m, 0, 0, 0] = ((x[m, 0, 0, 0] * 10 + 1) % K) / 10
        return x
    mod.corrupt = corrupt
    monkeypatch.setitem(sys.modules, 'robust_nb.corruptions', mod)
    import robust_nb
    monkeypatch.setattr(robust_nb, 'corruptions', mod, raising=False)
    return mod


def make_suite(cs=('gaussian_noise', 'fog'), sev=(1, 2, 3, 4, 5), n=24, name='imagenet-fake'):
    clean = Labelled(n)
    shifts = [Shift('clean', clean, 'clean'), Shift('other', Labelled(n, 1), 'natural'),
              Shift('masked', Labelled(n), 'natural', class_mask=torch.tensor([True, True, False, True]))]
    shifts += [Shift(f'{c}-{s}', clean, 'corruption', c, s, on_the_fly=True) for c in cs for s in sev]
    return Suite(name, K, list('abcd'), shifts)   # an ImageNet suite: 'auto' mCE uses AlexNet's ImageNet-C errors


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('ROBUST_NB_NO_PROGRESS', '1')


def test_accuracy_mask_and_corruption_counts(monkeypatch):
    fake_corruptions(monkeypatch)
    suite = make_suite()
    r = evaluate(Oracle(), suite, batch_size=5, cache=False, baseline=None)
    df = r.shifts.set_index('shift')
    assert df.loc['clean', 'top1'] == 1 and df.loc['other', 'top1'] == 1
    assert df.loc['masked', 'top1'] == pytest.approx(18 / 24)        # label 2 masked out: 6 of 24 wrong
    assert np.isnan(df.loc['masked', 'top5'])                         # top-5 of a 4-class problem is undefined
    # corrupted accuracy decreases with severity on average and equals 1 - fraction of flipped labels
    acc = [df.loc[f'fog-{s}', 'top1'] for s in range(1, 6)]
    assert acc[0] > acc[-1]
    assert r.corruption_table().shape == (2, 6)


def test_determinism_and_seed(monkeypatch):
    fake_corruptions(monkeypatch)
    suite = make_suite()
    a = evaluate(Oracle(), suite, batch_size=7, cache=False, seed=0, baseline=None).shifts
    b = evaluate(Oracle(), suite, batch_size=7, cache=False, seed=0, baseline=None).shifts
    c = evaluate(Oracle(), suite, batch_size=7, cache=False, seed=1, baseline=None).shifts
    pd.testing.assert_frame_equal(a, b)
    assert not a.top1.equals(c.top1)


def test_cache_rerun_costs_nothing_and_resumes(monkeypatch):
    calls = []
    fake_corruptions(monkeypatch, calls)
    suite = make_suite()
    m = Oracle()
    r1 = evaluate(m, suite, batch_size=8)
    seen = m.calls
    m.calls = 0; calls.clear()
    r2 = evaluate(m, suite, batch_size=8)
    assert m.calls == 1 and not calls          # only the class-count probe runs
    assert r2.info['cached_shifts'] == len(suite)
    pd.testing.assert_frame_equal(r1.shifts, r2.shifts)
    # changed weights -> new fingerprint -> recomputed
    with torch.no_grad(): m.scale += 1
    m.calls = 0
    evaluate(m, suite, batch_size=8)
    assert m.calls == seen


def test_resume_after_crash(monkeypatch):
    fake_corruptions(monkeypatch)
    suite = make_suite()

    class Crashy(Oracle):
        _crash_at = None
        def forward(self, x):
            if self._crash_at is not None and self.calls >= self._crash_at: raise KeyboardInterrupt
            return super().forward(x)

    m = Crashy(); m._crash_at = 24 * 5 + 1
    with pytest.raises(KeyboardInterrupt):
        evaluate(m, suite, batch_size=24)
    m._crash_at = None; m.calls = 0
    r = evaluate(m, suite, batch_size=24)
    # first 5 shifts (after the probe) were cached before the crash
    assert r.info['cached_shifts'] == 5
    assert m.calls == 1 + 24 * (len(suite) - 5)
    ref = evaluate(Oracle(), suite, batch_size=24, cache=False)
    pd.testing.assert_frame_equal(r.shifts, ref.shifts)


def test_class_mismatch_error(monkeypatch):
    fake_corruptions(monkeypatch)
    with pytest.raises(ValueError, match="outputs 5 classes but suite 'imagenet-fake' has 4"):
        evaluate(Oracle(5), make_suite(), cache=False)


def test_logit_transform():
    # a 2-way shift: classes {0,1} -> 0, {2,3} -> 1
    tf = lambda l: torch.stack([l[:, :2].max(1).values, l[:, 2:].max(1).values], 1)
    class Two(Labelled):
        def __getitem__(self, i): x, y = super().__getitem__(i); return x, y // 2
    suite = Suite('fake', K, list('abcd'), [Shift('clean', Labelled(8), 'clean'), Shift('two', Two(8), 'natural', logit_transform=tf)])
    r = evaluate(Oracle(), suite, cache=False, baseline=None)
    assert r.shifts.top1.tolist() == [1., 1.]
    assert np.isnan(r.shifts.top5.iloc[1])     # fewer than 5 classes


def test_summary_mce_matches_metrics(monkeypatch):
    fake_corruptions(monkeypatch)
    norm = {'gaussian_noise': [.5, .6, .7, .8, .9], 'fog': .6, 'clean': .3}
    r = evaluate(Oracle(), make_suite(), batch_size=8, cache=False, baseline=norm)
    s = r.summary()
    errs = r.corruption_errors()
    assert s['mCE (custom)'] == pytest.approx(M.mce(errs, norm))
    assert s['rel. mCE (custom)'] == pytest.approx(M.relative_mce(errs, 0., norm))
    nat = r.shifts[r.shifts.kind == 'natural'].top1.tolist()
    cor = r.shifts[r.shifts.kind == 'corruption'].top1.mean()
    assert s['avg shifts'] == pytest.approx(100 * np.mean(nat + [cor]))
    # auto baseline with ImageNet-C names on an ImageNet suite: AlexNet restricted to these corruptions
    r2 = evaluate(Oracle(), make_suite(), batch_size=8, cache=False)
    assert r2.baseline['name'] == 'alexnet[2/15]'
    assert r2.summary()['mCE (alexnet[2/15])'] == pytest.approx(M.mce(errs, M.ALEXNET.subset(['gaussian_noise', 'fog'])))
    # a reference whose error does not grow under a corruption: relative mCE undefined (NaN), mCE still defined
    r4 = evaluate(Oracle(), make_suite(), batch_size=8, cache=False, baseline={'gaussian_noise': .3, 'fog': .6, 'clean': .3})
    assert np.isnan(r4.summary()['rel. mCE (custom)']) and np.isfinite(r4.summary()['mCE (custom)'])
    # incomplete severities: no mCE, but the table still works
    r3 = evaluate(Oracle(), make_suite(sev=(1, 3)), cache=False)
    assert not any(k.startswith('mCE') for k in r3.summary().index)


def test_results_roundtrip(monkeypatch, tmp_path):
    fake_corruptions(monkeypatch)
    r = evaluate(Oracle(), make_suite(), batch_size=8, cache=False)
    r.save(tmp_path / 'r.json')
    r2 = Results.load(tmp_path / 'r.json')
    pd.testing.assert_frame_equal(r.shifts, r2.shifts)
    pd.testing.assert_series_equal(r.summary(), r2.summary())


def test_fingerprints():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    f = model_fingerprint(m)
    m[1].num_batches_tracked += 1
    assert model_fingerprint(m) != f
    assert model_fingerprint(m, 'rule=ours') != model_fingerprint(m)
    f = model_fingerprint(m); m[0].rule = 'max_logit'            # plain public settings count
    assert model_fingerprint(m) != f
    s1, s2 = Shift('x', Labelled(8), 'natural'), Shift('x', Labelled(8, 1), 'natural')
    assert shift_fingerprint(s1) != shift_fingerprint(s2)


def test_costs():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    m[0].weight.requires_grad_(False)
    assert count_params(m) == (8 * 36 * 10 + 10, 8 * 27 + 8 * 36 * 10 + 10)
    f = flops(m, (2, 3, 8, 8))
    assert f['macs'] == 8 * 27 * 36 + 288 * 10           # per image
    assert f['flops'] == 2 * f['macs']
    assert latency(m, input_size=(2, 3, 8, 8), warmup=1, repeat=2) > 0
    assert train_ms_per_img(types.SimpleNamespace(ms_per_img=3.5)) == 3.5
    assert train_ms_per_img([dict(img_per_s=10.)] + [dict(img_per_s=2000.)] * 3) == pytest.approx(.5)   # first step excluded
    from robust_nb.engine import fit
    x, y = torch.rand(32, 3, 8, 8), torch.randint(10, (32,))
    res = fit(m, lambda mm, b: torch.nn.functional.cross_entropy(mm(b[0]), b[1]), (x, y), max_steps=3, batch_size=8, progress=False)
    assert train_ms_per_img(res) == pytest.approx(res.ms_per_img) and train_ms_per_img(res.history) == pytest.approx(res.ms_per_img)
    hist = types.SimpleNamespace(history=[dict(step=i, time=1. + .2 * i) for i in range(6)])
    assert train_ms_per_img(hist, batch_size=100) == pytest.approx(2.)
    n = []
    assert train_ms_per_img(lambda: n.append(1), batch_size=10, warmup=1, repeat=3) >= 0 and len(n) == 4
    with pytest.raises(ValueError, match="batch_size"):
        train_ms_per_img(lambda: None)


def test_evaluate_perturbations(monkeypatch):
    mod = fake_corruptions(monkeypatch)
    mod.PERTURBATIONS = ('gaussian_noise', 'translate'); mod.NOISE_PERTURBATIONS = ('gaussian_noise',)
    mod.GEOMETRIC_PERTURBATIONS = ('translate',)
    def perturbation_sequence(x, name, difficulty=1, generator=None, crop=None):
        frames = []
        for t in range(5):   # the label pixel moves on every second frame: predictions y, y, y+1, y+1, y+2
            f = x.clone(); f[:, 0, 0, 0] = ((f[:, 0, 0, 0] * 10).round() + t // 2) / 10; frames.append(f)
        return torch.stack(frames, 1)
    mod.perturbation_sequence = perturbation_sequence
    from robust_nb.evaluate import evaluate_perturbations
    m = Oracle(k=8)
    df = evaluate_perturbations(m, Labelled(12), batch_size=5).set_index('perturbation')
    assert df.loc['gaussian_noise', 'flip_prob'] == pytest.approx(3 / 4)    # every frame vs the first
    assert df.loc['translate', 'flip_prob'] == pytest.approx(2 / 4)         # consecutive frames
    assert (df.t5d >= 0).all()
    d2 = evaluate_perturbations(m, Labelled(12), difficulty=2, batch_size=5).set_index('perturbation')
    assert d2.loc['translate', 'flip_prob'] == pytest.approx(1.)            # stride 2: always one label apart
    m.calls = 0
    evaluate_perturbations(m, Labelled(12), batch_size=5)                   # cached
    assert m.calls == 0
    assert M.mfr(df.flip_prob.to_dict(), {'gaussian_noise': .75, 'translate': .25}) == pytest.approx(150.)

def test_auto_normaliser_is_alexnet_only_for_imagenet_suites():
    from robust_nb.data import Suite, Shift
    from robust_nb.evaluate import resolve_baseline
    ds = torch.utils.data.TensorDataset(torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    shifts = lambda: [Shift('clean', ds, 'clean')] + [Shift(f'fog-{s}', ds, 'corruption', corruption='fog', severity=s) for s in range(1, 6)]
    assert resolve_baseline('auto', Suite('imagenet', 10, [str(i) for i in range(10)], shifts())).name.startswith('alexnet')
    for name in ('cifar10-c', 'objectnet-c'):   # same corruption names, but AlexNet's ImageNet-C errors do not apply
        assert resolve_baseline('auto', Suite(name, 10, [str(i) for i in range(10)], shifts())) is None


def _fake_results(baseline, extra_top1=.1):
    "Hand-made Results: clean 80%, natural 60%, the 15 ImageNet-C corruptions at half AlexNet's error, 4 extras at `extra_top1`."
    rows = [dict(shift='clean', kind='clean', n=10, top1=.8, ece=.05, rms_ce=.07),
            dict(shift='v2', kind='natural', n=10, top1=.6, ece=.1, rms_ce=.1)]
    rows += [dict(shift=f'{c}-{s}', kind='corruption', corruption=c, severity=s, n=10, top1=1 - e / 2)
             for c in CORRUPTIONS for s, e in zip(SEVERITIES, M.ALEXNET_ERRORS[c])]
    rows += [dict(shift=f'{c}-{s}', kind='corruption', corruption=c, severity=s, n=10, top1=extra_top1)
             for c in EXTRA_CORRUPTIONS for s in SEVERITIES]
    return Results('m', 'imagenet', pd.DataFrame(rows, columns=SHIFT_COLUMNS), baseline)


def test_extra_corruptions_never_change_mce():
    corr = 100 * (1 - np.mean([e for v in M.ALEXNET_ERRORS.values() for e in v]) / 2)
    for baseline in (M.ALEXNET.to_dict(), None):
        r = _fake_results(baseline)
        s = r.summary()
        assert r.corruption_sets() == (list(CORRUPTIONS), list(EXTRA_CORRUPTIONS))
        assert s['corruptions'] == pytest.approx(corr) and s['extra corruptions'] == pytest.approx(10.)
        assert s['avg shifts'] == pytest.approx((60 + corr) / 2)                    # extras are not a shift of Avg. shifts
        assert r.shift_accuracies() == pytest.approx({'v2': 60., 'corruptions': corr})
        if baseline is None: assert not any(k.startswith('mCE') for k in s.index)
    # half of AlexNet's error on all 15: mCE 50 exactly, and the extras (whatever their accuracy) do not move it
    assert s.name == 'm' and _fake_results(M.ALEXNET.to_dict()).summary()['mCE (alexnet)'] == pytest.approx(50.)
    assert _fake_results(M.ALEXNET.to_dict(), extra_top1=.9).summary()['mCE (alexnet)'] == pytest.approx(50.)
    # relative mCE: sum_s (E_s - .2) / sum_s (E^A_s - E^A_clean) per corruption
    rel = np.mean([(sum(v) / 2 - 5 * .2) / (sum(v) - 5 * M.ALEXNET_CLEAN_ERROR) for v in M.ALEXNET_ERRORS.values()])
    assert _fake_results(M.ALEXNET.to_dict()).summary()['rel. mCE (alexnet)'] == pytest.approx(100 * rel)


def test_auto_baseline_with_extra_folders(monkeypatch):
    from robust_nb.evaluate import resolve_baseline
    fake_corruptions(monkeypatch)
    suite = make_suite(cs=('gaussian_noise', 'fog', 'speckle_noise', 'saturate'))   # ImageNet-C with its extra/ folders
    norm = resolve_baseline('auto', suite)
    assert norm.name == 'alexnet[2/15]' and norm.corruptions == ['gaussian_noise', 'fog']
    r = evaluate(Oracle(), suite, batch_size=8, cache=False)
    s = r.summary()
    errs = r.corruption_errors()
    main = {c: errs[c] for c in ('gaussian_noise', 'fog')}
    assert s['mCE (alexnet[2/15])'] == pytest.approx(M.mce(main, M.ALEXNET.subset(list(main))))
    c = r.shifts[r.shifts.kind == 'corruption']
    assert s['corruptions'] == pytest.approx(100 * c[c.corruption.isin(main)].top1.mean())
    assert s['extra corruptions'] == pytest.approx(100 * c[c.corruption.isin(['speckle_noise', 'saturate'])].top1.mean())
    # an explicit full AlexNet normaliser: the same mCE, no KeyError, no silently dropped column
    s2 = evaluate(Oracle(), suite, batch_size=8, cache=False, baseline='alexnet').summary()
    assert s2['mCE (alexnet[2/15])'] == pytest.approx(s['mCE (alexnet[2/15])'])
    assert s2['extra corruptions'] == pytest.approx(s['extra corruptions'])


def test_summary_has_rms_calibration_error(monkeypatch):
    fake_corruptions(monkeypatch)
    r = evaluate(Oracle(), make_suite(), batch_size=8, cache=False, baseline=None)
    # Oracle: always right with logits 3 * one-hot over 4 classes; 24 < 100 samples make one adaptive bin
    conf = np.exp(3) / (np.exp(3) + 3)
    assert r.summary()['RMS clean'] == pytest.approx(100 * (1 - conf), abs=1e-4)
    assert r.summary()['ECE clean'] == pytest.approx(100 * (1 - conf), abs=1e-4)   # one bin too: |1 - conf|


def test_train_ms_per_img_time_columns():
    # per-step durations, by key name: median of the steps after the first (warm-up) = 0.1 s / 10 images = 10 ms
    assert train_ms_per_img([dict(step_time=.1)] * 3, batch_size=10) == pytest.approx(10.)
    assert train_ms_per_img([dict(dt=.5), dict(dt=.1), dict(dt=.1), dict(dt=.2)], batch_size=10) == pytest.approx(10.)
    # `time` is a running clock, as engine.fit logs it: (0.9 - 0.3) s over 3 steps of 20 images = 10 ms
    assert train_ms_per_img([dict(time=t) for t in (.3, .5, .7, .9)], batch_size=20) == pytest.approx(10.)
    # per-step values under `time` are not guessed: a clock that does not advance is an error, cumulative=False reads them
    with pytest.raises(ValueError, match="cumulative=False"):
        train_ms_per_img([dict(time=.1)] * 3, batch_size=10)
    assert train_ms_per_img([dict(time=.1)] * 3, batch_size=10, cumulative=False) == pytest.approx(10.)
    # any other column needs to say which it is
    with pytest.raises(ValueError, match="cumulative=True or False"):
        train_ms_per_img([dict(sec=.1)] * 3, batch_size=10, time_key='sec')
    assert train_ms_per_img([dict(sec=.1)] * 3, batch_size=10, time_key='sec', cumulative=False) == pytest.approx(10.)
    # what engine.fit logs: ms_per_img wins; its `time` column is a running clock
    hist = [dict(step=i + 1, ms_per_img=2., time=.05 + .02 * i) for i in range(4)]
    assert train_ms_per_img(hist, batch_size=10) == 2.
    assert train_ms_per_img(hist, batch_size=10, time_key='time') == pytest.approx(2.)


def test_evaluate_perturbations_geometric_crop():
    from robust_nb.evaluate import evaluate_perturbations
    import robust_nb.corruptions as C

    class Seen(nn.Module):
        def __init__(self): super().__init__(); self._lo, self._size = [], set()
        def forward(self, x):
            self._lo.append(x.amin().item()); self._size.add(tuple(x.shape[-2:]))
            return torch.zeros(len(x), 10)
    img = torch.full((2, 3, 40, 40), .5); img[..., 14:26, 14:26] = .9          # flat background around some content
    ds = torch.utils.data.TensorDataset(img, torch.zeros(2, dtype=torch.long))
    geo = ['zoom_blur', 'translate', 'rotate', 'tilt', 'shear']               # `scale` zooms out to 0.4: black in ImageNet-P too
    m = Seen()
    evaluate_perturbations(m, ds, geo, crop=28, cache=False)
    assert m._size == {(28, 28)}                               # warped at 40 px, centre-cropped to 28 (ImageNet-P: 256 -> 224)
    assert min(m._lo) > .45                                    # no zero-filled pixels in any frame
    m = Seen()
    evaluate_perturbations(m, ds, ['brightness', 'gaussian_noise'], crop=28, cache=False)
    assert m._size == {(28, 28)}                               # the others start from the centre crop
    for p in geo[1:]:                                          # warped at the frame size instead, they show black borders
        assert C.perturbation_sequence(img, p).amin() == 0
    m = Seen()
    with pytest.warns(UserWarning, match="crop="):
        evaluate_perturbations(m, ds, ['rotate'], cache=False)
    assert min(m._lo) == 0.                                    # without crop: black corners
    with pytest.raises(ValueError, match="crop=48"):
        evaluate_perturbations(Seen(), ds, ['brightness'], crop=48, cache=False)


class SoftOracle(Oracle):
    "Oracle's logits through a softmax: a model that returns probabilities."
    def forward(self, x): return super().forward(x).softmax(1)


def test_probabilities_as_logits_are_refused_on_the_first_batch(monkeypatch):
    fake_corruptions(monkeypatch)
    m = SoftOracle()
    with pytest.raises(ValueError, match=r"returns probabilities.*NLL and ECE would be wrong.*outputs='probs'"):
        evaluate(m, make_suite(), cache=False)
    assert m.calls == 1                                # one image (check_classes), before any shift is evaluated
    with pytest.raises(ValueError, match="outputs='probs'"):   # evaluate_shift alone checks its first batch
        evaluate_shift(m, make_suite().shifts[0])
    with pytest.raises(ValueError, match=r"not probabilities.*outputs='logits'"):
        evaluate(Oracle(), make_suite(), cache=False, outputs='probs')
    with pytest.raises(ValueError, match="'logits' or 'probs'"):
        evaluate(Oracle(), make_suite(), cache=False, outputs='prob')


def test_probs_switch_gives_the_logit_models_nll_and_ece(monkeypatch):
    fake_corruptions(monkeypatch)
    suite = make_suite(sev=(1, 3))
    r = evaluate(Oracle(), suite, batch_size=5, baseline=None)
    rp = evaluate(SoftOracle(), suite, batch_size=5, baseline=None, outputs='probs')
    cols = ['top1', 'top5', 'ece', 'rms_ce', 'nll']
    np.testing.assert_allclose(rp.shifts[cols].values, r.shifts[cols].values, rtol=1e-5, atol=1e-6)   # incl. the masked shift
    # hand-computed: Oracle is always right on 'clean' with logit 3 vs 0 (x3 others): NLL = log(1 + 3 e^-3), conf = 1/(1 + 3 e^-3)
    clean = rp.shifts.set_index('shift').loc['clean']
    assert clean.nll == pytest.approx(np.log(1 + 3 * np.exp(-3)), rel=1e-5)
    assert clean.ece == pytest.approx(1 - 1 / (1 + 3 * np.exp(-3)), rel=1e-4)
    assert rp.info['model_fingerprint'] != model_fingerprint(SoftOracle())   # probs results never share a cache with logits


def _grey_mp4(path, levels, size=16):
    "An H.264 video of uniform grey frames (PyAV, qp=0: near-lossless)."
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w') as c:
        s = c.add_stream('libx264', rate=10); s.width = s.height = size; s.pix_fmt = 'yuv420p'; s.options = {'qp': '0'}
        for v in levels:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), v, np.uint8), format='rgb24')): c.mux(pkt)
        for pkt in s.encode(): c.mux(pkt)

class _Brightness1000(torch.nn.Module):
    "1000 logits; the top class is 0 for dark images and 999 for bright ones."
    def forward(self, x): return -(x.mean((1, 2, 3))[:, None] - torch.linspace(0, 1, 1000)) ** 2

def test_imagenet_p_in_suite_summary_and_report(tmp_path):
    "ImageNet-P videos under root/imagenet-p join imagenet_suite; evaluate gives mFR-style columns with units in the report."
    pytest.importorskip('av')
    from PIL import Image
    from robust_nb.data import imagenet_suite, imagenet_wnids
    from robust_nb.report import accuracy_table, write_report
    w = imagenet_wnids()
    (tmp_path/'val'/w[0]).mkdir(parents=True); Image.new('RGB', (8, 8), (0, 0, 0)).save(tmp_path/'val'/w[0]/'a.JPEG')   # black: class 0
    _grey_mp4(tmp_path/'imagenet-p'/'rotate'/w[0]/'v.mp4', [0, 0, 255, 255])         # predictions 0 0 999 999: 1 flip in 3 pairs
    _grey_mp4(tmp_path/'imagenet-p'/'brightness'/w[0]/'v.mp4', [0, 0, 0, 0])         # no flips
    _grey_mp4(tmp_path/'imagenet-p'/'speckle_noise'/w[0]/'v.mp4', [0, 255, 255, 255])  # noise: every frame vs the first, 3 of 3
    suite = imagenet_suite(tmp_path, strict=False)
    ps = [s for s in suite if s.kind == 'perturbation']
    assert [s.info['perturbation'] for s in ps] == ['brightness', 'rotate', 'speckle_noise'] and suite.shifts[0].kind == 'clean'
    r = evaluate(_Brightness1000(), suite, cache=False, progress=False, name='m')
    fp = r.perturbation_table()['FP (%)']
    assert fp['rotate'] == pytest.approx(100 / 3, abs=1e-6) and fp['brightness'] == 0 and fp['speckle_noise'] == pytest.approx(100)
    s = r.summary()
    assert s['mFP (unnormalised)'] == pytest.approx(100 / 6, abs=1e-6)                # mean of rotate and brightness
    assert s['mFP extra perturbations (unnormalised)'] == pytest.approx(100)           # the validation perturbation, apart
    assert 'avg shifts' not in s and s['imagenet'] == 100
    cols = list(accuracy_table(r).columns)
    assert 'mFP (%, unnormalised)' in cols and 'mT5D (top-5 distance, unnormalised)' in cols
    html = (write_report(r, tmp_path/'out')['html']).read_text()
    assert 'ImageNet-P per perturbation' in html
    r2 = evaluate(_Brightness1000(), suite, cache=False, progress=False, name='m',
                  p_baseline=dict(name='ref', flip_prob={'rotate': 2 / 3, 'brightness': .5}))
    assert r2.summary()['mFR (ref)'] == pytest.approx((50 + 0) / 2)
    assert Results.load(r.save(tmp_path/'r.json') or tmp_path/'r.json').summary()['mFP (unnormalised)'] == pytest.approx(100 / 6)
