import math
import numpy as np
import pytest
import torch
from robust_nb.metrics import (accuracy, mce, relative_mce, corruption_errors, ALEXNET_ERRORS, ALEXNET_CLEAN_ERROR, ALEXNET,
                               Normaliser, get_normaliser, flip_rate, top5_distance, mfr, mt5d, ece,
                               rms_calibration_error, f_correct, avg_shifts)
from robust_nb.corruptions import CORRUPTIONS as IMAGENET_C   # the 15 mCE corruptions, defined only in corruptions


def test_accuracy_hand():
    logits = torch.tensor([[3., 2, 1, 0], [0, 1, 2, 3], [1, 3, 2, 0]])
    y = torch.tensor([0, 1, 2])
    # ranks of true class: 1, 3, 2
    assert accuracy(logits, y, topk=(1, 2, 3)) == pytest.approx((1/3, 2/3, 1.))
    with pytest.raises(ValueError, match="labels must be in"):
        accuracy(logits, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="topk"):
        accuracy(logits, y, topk=(1, 5))


def test_alexnet_table_matches_readme_means():
    means = [.886428, .894468, .922640, .819880, .826268, .785948, .798360, .866816, .826572, .819324, .564592,
             .853204, .646056, .717840, .606500]
    assert list(ALEXNET_ERRORS) == list(IMAGENET_C)
    np.testing.assert_allclose([np.mean(ALEXNET_ERRORS[c]) for c in IMAGENET_C], means, atol=1e-6)
    assert ALEXNET_CLEAN_ERROR == pytest.approx(.43478)


def test_mce_hand_values():
    # errors e*ALEXNET on each corruption with factor k_c: CE_c = k_c, mCE = 100 mean(k)
    k = np.linspace(.2, 1.1, 15)
    errs = {c: [min(e * kc, 1.) for e in ALEXNET_ERRORS[c]] for c, kc in zip(IMAGENET_C, k)}
    exp = np.mean([sum(errs[c]) / sum(ALEXNET_ERRORS[c]) for c in IMAGENET_C]) * 100
    assert mce(errs) == pytest.approx(exp)
    # dict severity -> error is accepted and equivalent
    errs2 = {c: dict(zip(range(1, 6), v)) for c, v in errs.items()}
    assert mce(errs2) == pytest.approx(exp)
    # ResNet-50-like sanity: uniform 0.5 error
    flat = {c: [.5] * 5 for c in IMAGENET_C}
    assert mce(flat) == pytest.approx(100 * np.mean([2.5 / sum(ALEXNET_ERRORS[c]) for c in IMAGENET_C]))


def test_relative_mce_hand():
    clean = .25
    errs = {c: [clean + .3 * (e - ALEXNET_CLEAN_ERROR) for e in v] for c, v in ALEXNET_ERRORS.items()}
    assert relative_mce(errs, clean) == pytest.approx(30.)
    # relative CE uses the sums: one corruption that does not degrade has rel CE 0
    errs['fog'] = [clean] * 5
    assert corruption_errors(errs, clean_error=clean)['fog'] == pytest.approx(0.)


def test_custom_baselines():
    norm = {'a': [.5, .6, .7, .8, .9], 'b': .5, 'clean': .2}
    errs = {'a': [.35] * 5, 'b': [.25] * 5}
    assert mce(errs, baseline=norm) == pytest.approx(100 * (1.75 / 3.5 + 1.25 / 2.5) / 2)
    assert relative_mce(errs, .1, baseline=norm) == pytest.approx(100 * (1.25 / (3.5 - 1) + .75 / (2.5 - 1)) / 2)
    with pytest.raises(ValueError, match="clean error"):
        relative_mce(errs, .1, baseline={'a': .5, 'b': .5})
    n = get_normaliser('alexnet').subset(['fog'])
    assert mce({'fog': ALEXNET_ERRORS['fog']}, baseline=n) == pytest.approx(100.)


@pytest.mark.parametrize("errs,msg", [
    ({c: v for c, v in ALEXNET_ERRORS.items() if c not in ('fog', 'snow')}, "missing ['snow', 'fog']"),
    (dict(ALEXNET_ERRORS, saturate=[.1] * 5), "unexpected ['saturate']"),
    (dict(ALEXNET_ERRORS, fog=[.1] * 3), "has 3 severity errors"),
    (dict(ALEXNET_ERRORS, fog={1: .1, 2: .1, 3: .1, 5: .1}), "missing [4]"),
    (dict(ALEXNET_ERRORS, fog=[10, 20, 30, 40, 50]), "divide by 100"),
    (dict(ALEXNET_ERRORS, fog=[-.1] * 5), "fractions in [0,1]"),
    (dict(ALEXNET_ERRORS, fog=[float('nan')] * 5), "non-finite"),
])
def test_mce_bad_input(errs, msg):
    with pytest.raises((KeyError, ValueError)) as e:
        mce(errs)
    assert msg in str(e.value)


def _flip_loop(preds, noise, d):
    "The definition, written as loops over videos and frame pairs."
    out = []
    for v in preds.tolist():
        pairs = [(0, t) for t in range(1, len(v))] if noise else [(t, t + d) for t in range(len(v) - d)]
        out.append(np.mean([v[a] != v[b] for a, b in pairs]))
    return float(np.mean(out))


def _t5d_loop(logits, noise, d):
    out = []
    for v in logits:
        T = len(v)
        pairs = [(0, t) for t in range(1, T)] if noise else [(t, t + d) for t in range(T - d)]
        ds = []
        for a, b in pairs:
            ra = sorted(range(len(v[a])), key=lambda c: -v[a][c])
            rb = sorted(range(len(v[b])), key=lambda c: -v[b][c])
            rank_b = {c: i + 1 for i, c in enumerate(rb)}
            ds.append(sum(abs(min(rank_b[ra[i - 1]], 6) - i) for i in range(1, 6)))
        out.append(np.mean(ds))
    return float(np.mean(out))


@pytest.mark.parametrize("noise,d", [(True, 1), (False, 1), (False, 2), (False, 3)])
def test_flip_and_t5d_match_loops(noise, d):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 8, 12, generator=g)
    logits = logits + torch.linspace(0, 2, 8)[None, :, None] * torch.randn(6, 1, 12, generator=g)
    assert flip_rate(logits, noise=noise, difficulty=d) == pytest.approx(_flip_loop(logits.argmax(-1), noise, d))
    assert top5_distance(logits, noise=noise, difficulty=d) == pytest.approx(_t5d_loop(logits.tolist(), noise, d))


def test_mfr_mt5d():
    assert mfr({'a': .1, 'b': .2}, {'a': .4, 'b': .4}) == pytest.approx(100 * (.25 + .5) / 2)
    assert mt5d({'a': 1., 'b': 3.}) == pytest.approx(2.)
    with pytest.raises(KeyError, match="no value for"):
        mfr({'a': .1, 'c': .2}, {'a': .4})
    with pytest.raises(ValueError, match="at least 2 frames"):
        flip_rate(torch.zeros(3, 1, dtype=torch.long))


def _ece_loop(probs, y, n_bins):
    conf, pred = probs.max(1)
    tot = 0.
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (conf > lo) & (conf <= hi)
        if m.any(): tot += m.sum().item() / len(y) * abs((pred[m] == y[m]).float().mean().item() - conf[m].mean().item())
    return tot


def test_ece_matches_loop_and_rms_properties():
    g = torch.Generator().manual_seed(1)
    probs = (torch.randn(500, 10, generator=g) * 2).softmax(-1)
    y = torch.randint(10, (500,), generator=g)
    assert ece(probs, y) == pytest.approx(_ece_loop(probs, y, 15), abs=1e-6)
    # a perfectly calibrated, perfectly confident classifier has zero error
    onehot = torch.eye(10)[y]
    assert ece(onehot, y) == 0 and rms_calibration_error(onehot, y) == 0
    # RMS >= the same-bin ECE (Jensen) and includes the most confident bin
    assert rms_calibration_error(probs, y, n_bins=15) >= ece(probs, y) - 1e-9
    conf = probs.max(1).values
    yy = probs.argmax(1).clone()
    top = conf.argsort()[-100:]
    yy[top] = (yy[top] + 1) % 10            # only the 100 most confident are wrong
    assert rms_calibration_error(probs, yy, bin_size=100) > 0.1


def test_f_correct_avg_shifts():
    assert f_correct(torch.tensor([0, 0, 1, 1]), torch.tensor([False, True, True, False])) == .5
    with pytest.raises(ValueError, match="entries"):
        f_correct([0, 1], [True])
    # Table 1, 'Ours' and 'WiSE-FT (E2E)' rows of the first paper
    assert avg_shifts(dict(v2=79.1, r=89.9, sketch=65.8, objectnet=73.2, a=80.9, c=64.9)) == pytest.approx(75.6, abs=.05)
    assert avg_shifts(dict(clean=86.9, v2=79.5, r=90.1, s=65.0, o=72.1, a=80.6, c=62.9)) == pytest.approx(75.0, abs=.05)
    with pytest.raises(ValueError, match="no distribution shifts"):
        avg_shifts({'clean': 80.})


def test_embedded_name_uses_defaults_and_says_so(monkeypatch):
    from robust_nb import metrics
    ref = Normaliser('embedded', {'fog': [.4] * 5, 'snow': .5}, .2, dict(size=32, n=1000, seed=0))
    monkeypatch.setitem(metrics.BASELINES, 'embedded', lambda: ref)     # what embedded.reference_normaliser() would return, untrained
    errs = {'fog': [.2] * 5, 'snow': [.25] * 5}
    assert mce(errs, 'embedded') == pytest.approx(100 * (1 / 2 + 1.25 / 2.5) / 2)   # = 50
    assert mce(errs, ref) == mce(errs, 'embedded')                               # a Normaliser is taken as is
    # a suite with other corruptions: the error names the suite this normaliser was made for and the fix
    with pytest.raises(KeyError, match=r"made for size=32, n=1000, seed=0.*reference_normaliser\(size="):
        mce({'fog': [.2] * 5}, 'embedded')
    with pytest.raises(KeyError, match=r"made for size=32"):
        mce(dict(errs, spatter=[.1] * 5), ref.subset(['fog', 'snow']))
