import math
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from robust_nb.core import make_generator
from robust_nb.losses import jsd_loss
from robust_nb.augment import (augmix, noise2net, deepaugment, Noise2Net, fractals, pixmix, sample_gamma,
                               sample_dirichlet, sample_beta, autocontrast, equalize, posterize, solarize, affine,
                               apply_ops, AUGMENTATIONS, AUGMIX_OPS, mixup_cutmix)

def _imgs(n=6, size=16, seed=0): return torch.rand(n, 3, size, size, generator=make_generator(seed))
def _pil(t): return Image.fromarray((t.permute(1, 2, 0) * 255).round().byte().numpy())
def _ten(im): return torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255

def test_jsd_hand_computed():
    # p_c=(1,0), p_1=(0,1), p_2=(.5,.5): M=(.5,.5), KLs = log2, log2, 0 -> JS = 2/3 log 2
    lc, l1, l2 = torch.tensor([[60., -60.]]), torch.tensor([[-60., 60.]]), torch.zeros(1, 2)
    assert jsd_loss(lc, l1, l2).item() == pytest.approx(2 / 3 * math.log(2), abs=1e-5)
    # a general case computed by hand from the definition
    lc, l1, l2 = torch.tensor([[1., 0., 0.]]), torch.tensor([[0., 1., 0.]]), torch.tensor([[0., 0., 2.]])
    ps = [torch.softmax(l, 1)[0].double() for l in (lc, l1, l2)]
    m = sum(ps) / 3
    expect = sum((p * (p / m).log()).sum() for p in ps) / 3
    assert jsd_loss(lc, l1, l2).item() == pytest.approx(expect.item(), rel=1e-5)
    # batchmean: a batch of two identical rows gives the same value
    assert jsd_loss(lc.repeat(2, 1), l1.repeat(2, 1), l2.repeat(2, 1)).item() == pytest.approx(expect.item(), rel=1e-5)
    l = torch.randn(5, 7)
    assert jsd_loss(l, l, l).item() == pytest.approx(0, abs=1e-6)

def test_jsd_clamps_mixture():
    # all three predictions put ~0 mass on class 2: M is clamped at 1e-7 so the loss stays finite
    l = torch.tensor([[200., 0., -200.]])
    assert torch.isfinite(jsd_loss(l, l, l))

def test_random_draws_moments_and_reproducibility():
    g = make_generator(0)
    assert sample_gamma(3., 20000, generator=g).mean().item() == pytest.approx(3., rel=.03)
    assert sample_gamma(.3, 20000, generator=g).mean().item() == pytest.approx(.3, rel=.05)
    assert sample_beta(1., 4., 20000, generator=g).mean().item() == pytest.approx(.2, abs=.01)
    w = sample_dirichlet(1., 100, 3, generator=g)
    assert torch.allclose(w.sum(1), torch.ones(100)) and (w > 0).all()
    assert torch.equal(sample_gamma(1., 9, generator=make_generator(1)), sample_gamma(1., 9, generator=make_generator(1)))

def test_ops_match_pil():
    x = (_imgs(4) ** 2 * 255).round() / 255
    assert torch.equal(equalize(x), torch.stack([_ten(ImageOps.equalize(_pil(t))) for t in x]))
    assert torch.equal(autocontrast(x), torch.stack([_ten(ImageOps.autocontrast(_pil(t))) for t in x]))
    bits = [1, 2, 3, 4]
    assert torch.equal(posterize(x, torch.tensor(bits)), torch.stack([_ten(ImageOps.posterize(_pil(t), b)) for t, b in zip(x, bits)]))
    thr = [0, 100, 200, 256]
    assert torch.allclose(solarize(x, torch.tensor(thr)), torch.stack([_ten(ImageOps.solarize(_pil(t), s)) for t, s in zip(x, thr)]), atol=1e-6)

def test_constant_image_untouched_by_equalize_and_autocontrast():
    x = torch.full((2, 3, 8, 8), .4)
    assert torch.allclose(autocontrast(x), x, atol=1e-6)
    assert torch.allclose(equalize(x), x, atol=1e-6)

def test_affine_translate_and_pil_rotate():
    x = _imgs(1, 16)
    out = affine(x, torch.tensor([[[1., 0, 0], [0, 1, 2]]]))     # translate_y by 2 px: out(v) = in(v+2)
    assert torch.allclose(out[..., :14, :], x[..., 2:, :], atol=1e-6) and (out[..., 14:, :] == 0).all()
    # rotate by 90 degrees (op id 3, level 10 -> int(10*30/10)=30 deg... use level s.t. 90 is impossible): compare 30 deg with PIL
    x8 = (x * 255).round() / 255
    ours = apply_ops(x8, torch.tensor([3]), torch.tensor([10.]), torch.tensor([1.]))   # 30 degrees
    ref = _ten(_pil(x8[0]).rotate(30, resample=Image.BILINEAR))
    inner = (slice(None), slice(4, 12), slice(4, 12))
    assert (ours[0][inner] - ref[inner]).abs().mean() < 0.02

def test_augmix_invariants():
    x = _imgs(8, 32)
    a = augmix(x, generator=make_generator(3))
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, augmix(x, generator=make_generator(3)))
    assert not torch.equal(a, augmix(x, generator=make_generator(4)))
    same = augmix(x[:1].repeat(8, 1, 1, 1), generator=make_generator(3))
    assert all(not torch.equal(same[0], same[i]) for i in range(1, 8))    # per-image randomness
    with pytest.raises(ValueError, match='divide by 255'): augmix(x * 255)
    with pytest.raises(ValueError, match='severity'): augmix(x, severity=11)
    with pytest.raises(ValueError, match='depth'): augmix(x, depth=0)

def test_augmix_is_convex_blend_of_image_and_chains():
    # width=1, depth=1 on a constant image: every op maps a constant image to itself except the geometric ones (zero
    # fill) and solarize (1-c); the result must lie between min and max of {c, op(c)} = within [0, 1] and be a blend
    x = torch.full((64, 3, 8, 8), 102 / 255)
    a = augmix(x, width=1, depth=1, generator=make_generator(0))
    assert (a <= 102 / 255 + 1e-6).all()          # c -> c (autocontrast/equalize/solarize), <= c (posterize), 0 (fill)
    assert (a < 102 / 255 - 1e-3).any()

def test_apply_ops_routes_each_image():
    x = _imgs(len(AUGMIX_OPS) + 1, 16)
    ops = torch.tensor(list(range(len(AUGMIX_OPS))) + [-1]); lv = torch.full((len(ops),), 2.); sg = torch.ones(len(ops))
    out = apply_ops(x, ops, lv, sg)
    assert torch.equal(out[-1], x[-1])
    assert torch.equal(out[0], autocontrast(x[:1])[0]) and torch.equal(out[1], equalize(x[1:2])[0])
    assert torch.equal(out[2], posterize(x[2:3], torch.tensor([4]))[0])          # int(2*4/10)=0 -> 4 bits
    assert torch.equal(out[4], solarize(x[4:5], torch.tensor([256 - 51]))[0])    # int(2*256/10)=51
    tx = out[7]                                                                  # translate_x by int(2*16/3/10)=1 px
    assert torch.allclose(tx[..., :15], x[7][..., 1:], atol=1e-6)

def test_noise2net_and_deepaugment():
    x = _imgs(6, 16)
    y = noise2net(x, generator=make_generator(0))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert torch.equal(y, noise2net(x, generator=make_generator(0)))
    assert not torch.equal(y, noise2net(x, generator=make_generator(1)))
    two = noise2net(x[:1].repeat(2, 1, 1, 1), generator=make_generator(0))
    assert (two[0] - two[1]).abs().mean() > 1e-3                                 # a different random net per image
    # structure is kept: the output correlates with the input
    c = torch.corrcoef(torch.stack([y.flatten(), x.flatten()]))[0, 1]
    assert c > 0.2
    d = deepaugment(x, generator=make_generator(0))
    assert torch.equal(d[3:], x[3:]) and (d[:3] - x[:3]).abs().flatten(1).mean(1).min() > 1e-3
    assert len(list(Noise2Net().parameters())) == 0

def test_noise2net_grad_free():
    x = _imgs(2, 8).requires_grad_()
    assert not noise2net(x.detach()).requires_grad

def test_fractals():
    f = fractals(6, 32, generator=make_generator(0))
    assert f.shape == (6, 3, 32, 32) and 0 <= f.min() and f.max() <= 1
    assert torch.equal(f, fractals(6, 32, generator=make_generator(0)))
    cover = (f.amax(1) > 0).float().mean((1, 2))
    assert (cover > .05).all() and (cover < .95).all()
    with pytest.raises(ValueError, match='n >= 1'): fractals(0, 32)

def test_fractals_chunked_are_bit_identical():
    # rendering chunk by chunk (what a bank of 1024 at 224 px does by default) gives the one-shot pictures and RNG state
    g = make_generator(0); ref = fractals(7, 48, walkers=32, generator=g, chunk=7); state = g.get_state()
    for chunk in (1, 3, 6):
        g = make_generator(0)
        assert torch.equal(fractals(7, 48, walkers=32, generator=g, chunk=chunk), ref), chunk
        assert torch.equal(g.get_state(), state), chunk
    torch.manual_seed(1); a = fractals(5, 32, chunk=5); s = torch.get_rng_state()       # torch's global RNG
    torch.manual_seed(1); assert torch.equal(fractals(5, 32, chunk=2), a) and torch.equal(torch.get_rng_state(), s)
    with pytest.raises(ValueError, match='chunk must be >= 1'): fractals(2, 32, chunk=0)

def test_pixmix():
    x = _imgs(8, 16)
    p = pixmix(x, generator=make_generator(0))
    assert p.shape == x.shape and 0 <= p.min() and p.max() <= 1
    assert torch.equal(p, pixmix(x, generator=make_generator(0)))
    black, white = torch.zeros(32, 3, 8, 8), torch.ones(4, 3, 8, 8)
    assert torch.equal(pixmix(black, mixing_pics=white, k=0, generator=make_generator(0)), black)
    assert (pixmix(black, mixing_pics=white, generator=make_generator(0)).flatten(1).amax(1) > .1).float().mean() > .05
    with pytest.raises(ValueError, match='resize'): pixmix(x, mixing_pics=torch.ones(2, 3, 8, 8))

def test_registry_and_mixup():
    x = _imgs(4, 16)
    for name in ('augmix', 'noise2net', 'deepaugment', 'pixmix'):
        assert AUGMENTATIONS[name](x, generator=make_generator(0)).shape == x.shape
    with pytest.raises(KeyError, match='valid names'): AUGMENTATIONS['nope']
    xm, ym = mixup_cutmix(5)(x.clone(), torch.arange(4))
    assert ym.shape == (4, 5) and torch.allclose(ym.sum(1), torch.ones(4))

@pytest.mark.parametrize('size', [16, 72])   # 72 px: translations as slice copies, rows moved one by one
def test_apply_ops_on_uint8_levels_match_the_float_ops(size):
    "augmix's uint8 chains: point ops and translations bit-exact, rotate/shear the same bilinear value rounded to 8 bit."
    x8 = (_imgs(2 * len(AUGMIX_OPS), size, seed=2) * 255).round()
    ops = torch.arange(len(AUGMIX_OPS)).repeat(2)
    lv = torch.rand(len(ops), generator=make_generator(0)) * 9.9 + .1
    sg = torch.where(torch.rand(len(ops), generator=make_generator(1)) < .5, -1., 1.)
    ref = apply_ops(x8 / 255, ops, lv, sg) * 255
    got = apply_ops(x8.to(torch.uint8), ops, lv, sg)
    assert got.dtype == torch.uint8
    exact = (ops != 3) & (ops != 5) & (ops != 6)
    assert torch.equal(got[exact].float(), ref[exact].round())
    assert (got[~exact].float() - ref[~exact]).abs().max() <= .5 + 1e-3

def test_augmix_chunks_do_not_change_the_result(monkeypatch):
    import robust_nb.augment as A
    x = _imgs(5, 24)
    a = augmix(x, generator=make_generator(7))
    monkeypatch.setattr(A, '_CHUNK_VALUES', 2 * 3 * 24 * 24)   # two images per chunk
    assert torch.equal(a, augmix(x, generator=make_generator(7)))

def test_augmix_takes_uint8_levels():
    u = (_imgs(3, 20) * 255).round().to(torch.uint8)
    a = augmix(u, generator=make_generator(2))
    assert a.dtype == torch.float32 and torch.equal(a, augmix(u.float() / 255, generator=make_generator(2)))
