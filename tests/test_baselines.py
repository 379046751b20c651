import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import pytest, torch
from robust_nb.models import timm_classifier, clip_classifier, register_tiny_clip, split_model
from robust_nb.baselines import (linear_probe, finetune, apt, vpt, vpt_model, wise_ft, wise_ft_sweep, zero_shot, tune, ALPHAS)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm_classifier("test_vit", 3, img_size=32, patch_size=8, global_pool="avg")


@pytest.fixture(scope="module")
def xy():
    torch.manual_seed(1)
    return torch.rand(12, 3, 32, 32), torch.arange(12) % 3


def _same(a, b): return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_linear_probe_only_fc_and_cache_exact(vit, xy):
    a = linear_probe(vit, xy, epochs=2, batch_size=4, cache=True)
    b = linear_probe(vit, xy, epochs=2, batch_size=4, cache=False)
    fc = vit.stages[-1].fc
    assert a.n_tuned == fc.weight.numel() + fc.bias.numel()
    assert _same(a.model.stages[:-1], vit.stages[:-1]) and not torch.equal(a.model.stages[-1].fc.weight, fc.weight)
    for p, q in zip(a.model.parameters(), b.model.parameters()): torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    assert vit.stages[-1].fc.weight.requires_grad                   # the input model is untouched


def test_finetune_changes_everything(vit, xy):
    r = finetune(vit, xy, epochs=1, batch_size=6)
    assert r.n_tuned == sum(p.numel() for p in vit.parameters())
    assert not torch.equal(r.model.stages[1].fn.qkv.weight, vit.stages[1].fn.qkv.weight)
    assert r.ms_per_img > 0 and r.n_seen == 12


def test_apt_tunes_same_layers_as_method(vit, xy):
    sp = split_model(vit, blocks=1)
    r = apt(vit, xy, blocks=1, epochs=1, batch_size=6)
    assert r.n_tuned == sp.n_tuned
    assert _same(r.model.stages[:sp.cut], vit.stages[:sp.cut])
    assert not _same(r.model.stages[sp.cut:], vit.stages[sp.cut:])
    assert len(r.model.stages) == len(vit.stages)                  # no extra heads


def test_frozen_batchnorm_stays_frozen_uncached(xy):
    torch.manual_seed(0)
    r18 = timm_classifier("test_resnet", 3)
    cut = split_model(r18, blocks=1).cut
    rm = [b.running_mean.clone() for b in r18.stages[0].modules() if isinstance(b, torch.nn.BatchNorm2d)]
    r = tune(r18, xy, cut=cut, cache=False, epochs=1, batch_size=6)
    rm2 = [b.running_mean for b in r.model.stages[0].modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(rm, rm2))
    c = tune(r18, xy, cut=cut, cache=True, epochs=1, batch_size=6)
    for p, q in zip(r.model.parameters(), c.model.parameters()): torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


def test_vpt_shallow_and_deep(vit, xy):
    x, _ = xy
    n_tok = vit.stages[0](vit.prep(x[:2])).shape[1]
    v = vpt_model(vit, 5)
    z = v.stages[1](v.stages[0](v.prep(x[:2])))
    assert z.shape[1] == n_tok + 5
    torch.testing.assert_close(z[:, 0], v.stages[0](v.prep(x[:2]))[:, 0])   # CLS stays first, prompts follow it
    torch.testing.assert_close(z[:, 1:6], v.stages[1].tokens.expand(2, -1, -1))
    assert v.stages[-1].num_prefix_tokens == 6 and vit.stages[-1].num_prefix_tokens == 1
    d = vpt_model(vit, 5, deep=True)
    assert d.kinds.count("prompt") == vit.n_blocks
    r = vpt(vit, xy, deep=True, epochs=1, batch_size=6)
    d_model = vit.stages[2].fn.fc1.weight.shape[1]
    assert r.n_tuned == vit.n_blocks * 5 * d_model + vit.stages[-1].fc.weight.numel() + 3
    blocks = [s for s, k in zip(r.model.stages, r.model.kinds) if k == "block"]
    orig = [s for s, k in zip(vit.stages, vit.kinds) if k == "block"]
    assert all(torch.equal(a.fn.qkv.weight, b.fn.qkv.weight) for a, b in zip(blocks, orig))
    with pytest.raises(TypeError, match="needs a ViT"): vpt_model(timm_classifier("test_resnet", 3))
    with pytest.raises(ValueError, match="tokens"): vpt_model(vit, 0)


def test_vpt_on_clip():
    c = clip_classifier(register_tiny_clip(), head="linear", num_classes=2)
    v = vpt_model(c, 3, deep=True)
    assert v(torch.rand(2, 3, 32, 32)).shape == (2, 2)


def test_wise_ft(vit, xy):
    sw = wise_ft_sweep(vit, xy, "e2e", epochs=1, batch_size=6)
    assert [k for k in sw if k != "tuned"] == list(ALPHAS) == [0.0, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1.0]
    ft = sw["tuned"].model
    for a in (0.0, 0.4, 1.0):
        for p0, p1, pa in zip(vit.parameters(), ft.parameters(), sw[a].parameters()):
            torch.testing.assert_close(pa, (1 - a) * p0 + a * p1)
    with pytest.raises(ValueError, match="alpha"): wise_ft(vit, ft, -0.1)
    with pytest.raises(ValueError, match="same architecture"): wise_ft(vit, timm_classifier("test_resnet", 3), .5)
    with pytest.raises(ValueError, match="'e2e' or 'linear'"): wise_ft_sweep(vit, xy, "full")


def test_zero_shot():
    name = register_tiny_clip()
    torch.manual_seed(0)
    r = zero_shot(name, ["a", "b", "c"])
    assert r.n_tuned == 0 and r.model(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="no parameters to train.*head='linear'"):   # zero-shot class embeddings are fixed
        linear_probe(r.model, (torch.rand(4, 3, 32, 32), torch.arange(4) % 3), epochs=1)


def test_bad_data(vit):
    with pytest.raises(TypeError, match="TuningSet or a tuple"): finetune(vit, torch.rand(2, 3, 32, 32))


# --- transfer_probe: CLIP's linear-probe protocol on frozen features ---
from robust_nb.baselines import transfer_probe, fit_logreg, c_sweep, prelogit_features
from torch.utils.data import TensorDataset
import torch.nn.functional as F


def _colour_classes(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return torch.rand(n, 3, 8, 8, generator=g) * 0.5 + F.one_hot(y, 3).float()[:, :, None, None] * 0.5, y


def _means(x): return x.mean((2, 3))


def test_probe_on_separable_features_is_perfect_and_sweeps_like_clip():
    x, y = _colour_classes()
    p = transfer_probe(None, (x[:45], y[:45]), (x[45:], y[45:]), features=_means)
    assert p.accuracy == 1.0 and (p.n_train, p.n_val, p.n_test) == (36, 9, 15)
    assert len(p.sweep) == 7 + 2 * 4 and min(p.sweep) == pytest.approx(1e-6) and max(p.sweep) == pytest.approx(1e6)
    assert p.sweep[p.C] == max(p.sweep.values())
    assert p.weight.shape == (3, 3) and p.bias.shape == (3,)


def test_dataset_tuple_and_disk_cache_give_the_same_probe(tmp_path, monkeypatch):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path))
    x, y = _colour_classes(seed=1)
    a = transfer_probe(None, (x[:45], y[:45]), (x[45:], y[45:]), features=_means)
    b = transfer_probe(None, TensorDataset(x[:45], y[:45]), TensorDataset(x[45:], y[45:]), features=_means, batch_size=7)
    c = transfer_probe(None, (x[:45], y[:45]), (x[45:], y[45:]), features=_means, budget=0, cache_key={'model': 'means'})
    assert list(tmp_path.glob('features/*/config.json'))                  # the fp16 shard cache was used
    assert a.C == b.C and a.accuracy == b.accuracy
    torch.testing.assert_close(a.weight, b.weight, atol=1e-4, rtol=1e-4)
    assert c.accuracy == a.accuracy


def test_given_val_split_is_used_and_train_val_refit():
    x, y = _colour_classes(90, seed=2)
    p = transfer_probe(None, (x[:50], y[:50]), (x[70:], y[70:]), val_ds=(x[50:70], y[50:70]), features=_means)
    assert (p.n_train, p.n_val, p.n_test) == (50, 20, 20)


def test_logreg_reaches_the_sklearn_optimum():
    x, y = _colour_classes()
    f = _means(x)
    for C in (0.01, 1., 100.):
        W, b = fit_logreg(f, y, 3, C)
        Wg, bg = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
        (C * F.cross_entropy(f @ Wg.T + bg, y, reduction='sum') + (Wg * Wg).sum() / 2).backward()
        assert Wg.grad.abs().max() < 1e-3 * max(1, C) and bg.grad.abs().max() < 1e-3 * max(1, C), C
    assert fit_logreg(f, y, 3, 1e-6)[0].abs().max() < 1e-4                   # C -> 0: W -> 0


def test_c_sweep_binary_search_resolution():
    best, seen = c_sweep(lambda c: -max(c / 10 ** -2.6, 10 ** -2.6 / c))
    assert best == pytest.approx(10 ** -2.625) and len(seen) == 15


def test_default_features_are_prelogits(vit, xy):
    x, y = xy
    f = prelogit_features(vit)(x)
    assert f.shape == (12, vit.stages[-1].fc.in_features)
    p = transfer_probe(vit, (x[:9], y[:9]), (x[9:], y[9:]), num_classes=3)
    assert p.weight.shape == (3, f.shape[1]) and 0 <= p.accuracy <= 1


def test_multihead_probe_uses_the_clean_head(vit, xy):
    from robust_nb.multihead import multihead_for
    _, mh = multihead_for(vit, blocks=1, p=0.)
    x = xy[0]
    with torch.no_grad():
        z = mh.shared(mh.features(x))
        for s in mh.heads[0][:-1]: z = s(z)
        torch.testing.assert_close(prelogit_features(mh)(x), mh.heads[0][-1](z, pre_logits=True))


def test_probe_input_errors(xy):
    x, y = xy
    with pytest.raises(TypeError, match='must carry labels'): transfer_probe(None, x, (x, y), features=_means)
    with pytest.raises(ValueError, match='val_frac'): transfer_probe(None, (x, y), (x, y), features=_means, val_frac=1.)
    with pytest.raises(TypeError, match='pass features='): transfer_probe(torch.nn.Linear(2, 2), (x, y), (x, y))


# --- AdvProp and Pyramid AT (DAD's adversarial baselines) ---
# the attacks, auxiliary BatchNorms and losses are robust_nb.dad's and robust_nb.losses': their behaviour (aux BN stats only
# from adversarial batches, per-level pyramid bounds, eps = 0 -> CE) is tested in test_dad.py; here only the fine-tuning wrappers
from robust_nb.baselines import advprop, pyramid_at
from robust_nb.dad import AuxBN
from robust_nb.models import timm_classifier as _tc


@pytest.fixture(scope="module")
def rn():
    torch.manual_seed(0)
    return _tc("test_resnet", 3)


def test_advprop_returns_the_original_architecture_trained(rn, xy):
    before = {k: v.clone() for k, v in rn.state_dict().items()}
    t = advprop(rn, xy, max_steps=1, epochs=1, batch_size=12, progress=False)
    assert not any(isinstance(m, AuxBN) for m in t.model.modules()) and t.ms_per_img > 0
    assert t.model.state_dict().keys() == rn.state_dict().keys() and not t.model.training
    assert all(torch.equal(v, rn.state_dict()[k]) for k, v in before.items())          # the input model is untouched
    assert not all(torch.equal(v, t.model.state_dict()[k]) for k, v in before.items())  # the copy trained


def test_pyramid_at_tunes_every_parameter(rn, xy):
    r = pyramid_at(rn, xy, max_steps=1, epochs=1, batch_size=12, progress=False)
    assert r.n_tuned == sum(p.numel() for p in rn.parameters()) and r.ms_per_img > 0
    assert r.model.state_dict().keys() == rn.state_dict().keys()
    s = pyramid_at(rn, xy, max_steps=1, epochs=1, batch_size=12, progress=False, split_bn=True)   # AdvProp-style BNs for x_adv
    assert not any(isinstance(m, AuxBN) for m in s.model.modules()) and s.model.state_dict().keys() == rn.state_dict().keys()

def test_baselines_and_teacher_refuse_bad_labels():
    "Labels are checked against the images and the model's classes before training (was a bare cross-entropy error)."
    import re
    from robust_nb import baselines as B
    from robust_nb.models import timm_classifier
    from robust_nb.teacher import robustify_teacher, small_teacher
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    with pytest.raises(TypeError, match='must hold integer class indices'): B.apt(timm_classifier('test_resnet', 10), (x, torch.rand(8)), blocks=2, epochs=1, progress=False)
    with pytest.raises(ValueError, match=re.escape('class index 12 but there are 10 classes')):
        B.finetune(timm_classifier('test_resnet', 10), (x, torch.arange(8) + 5), epochs=1, progress=False)
    with pytest.raises(ValueError, match=re.escape('class index 7 but there are 4 classes')):
        robustify_teacher(small_teacher(4), (x, torch.arange(8)), recipe='standard', recipe_kw={}, epochs=1, progress=False)
