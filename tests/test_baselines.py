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


def test_bad_data(vit):
    with pytest.raises(TypeError, match="TuningSet or a tuple"): finetune(vit, torch.rand(2, 3, 32, 32))
