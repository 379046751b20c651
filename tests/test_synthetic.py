"Tests for robust_nb.synthetic: determinism, shapes, balance, domain character, label only in the shape, errors."
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from robust_nb.synthetic import (render, SyntheticDataset, DOMAINS, TRANSFER, CLASSES, TRANSFER_CLASSES, NUM_CLASSES,
                                 SPLITS, shape_sdf, class_names)

ALL = DOMAINS + (TRANSFER,)

@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    "Rendering is many small elementwise ops: on an oversubscribed 2-core machine one thread is ~10x faster than two."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.mark.parametrize('domain', ALL)
def test_shapes_dtypes_range(domain):
    x, y = render(domain, 24, size=32, seed=1)
    assert x.shape == (24, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (24,) and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and torch.isfinite(x).all()
    assert torch.equal(x, (x * 255).round() / 255)                # 8-bit levels
    assert 0 <= y.min() and y.max() < len(class_names(domain))
    assert x.std() > .05                                          # not blank

@pytest.mark.parametrize('domain', ALL)
def test_determinism_across_batching(domain):
    x, y = render(domain, 30, seed=7, split='val')
    for start, n, chunk in [(0, 1, 1024), (5, 11, 1024), (13, 17, 4), (29, 1, 3)]:
        xs, ys = render(domain, n, seed=7, split='val', start=start, chunk=chunk)
        assert torch.equal(xs, x[start:start + n]) and torch.equal(ys, y[start:start + n])
    x2, y2 = render(domain, 30, seed=7, split='val')              # and across calls
    assert torch.equal(x2, x) and torch.equal(y2, y)

def test_seed_split_domain_change_images():
    x = render('photo', 8, seed=0)[0]
    assert not torch.equal(x, render('photo', 8, seed=1)[0])
    assert not torch.equal(x, render('photo', 8, seed=0, split='test')[0])
    assert not torch.equal(x, render('v2', 8, seed=0)[0])
    assert not torch.equal(render('photo', 4, seed=2**40)[0], render('photo', 4, seed=0)[0])   # high seed bits count

def test_sizes():
    for s in (16, 32, 48, 64):
        assert render('rendition', 3, size=s)[0].shape == (3, 3, s, s)
    # scenes are defined in continuous coordinates: 64 px downsampled looks like 32 px
    a, b = render('rendition', 16, size=32)[0], render('rendition', 16, size=64)[0]
    assert (F.avg_pool2d(b, 2) - a).abs().mean() < .03

@pytest.mark.parametrize('domain', ALL)
def test_label_balance(domain):
    C = len(class_names(domain))
    y = render(domain, 5 * C, seed=3, start=2 * C)[1]
    assert torch.equal(torch.bincount(y, minlength=C), torch.full((C,), 5))
    y = render(domain, 20 * C + 3, seed=3)[1]
    assert torch.bincount(y, minlength=C).min() >= 20
    assert not torch.equal(y[:C], y[C:2 * C])                    # a fresh order in every block

def test_sdf_area_and_sign():
    g = (torch.arange(400) + .5) / 400 * 6 - 3 + 1.3e-3
    gy, gx = torch.meshgrid(g, g, indexing='ij')
    for name in CLASSES + TRANSFER_CLASSES:
        inside = (shape_sdf(name, gx, gy) < 0).float()
        assert abs(inside.mean().item() * 36 - torch.pi) < .06, name
        assert shape_sdf(name, torch.tensor([3.]), torch.tensor([0.])).item() > 0
    # a polygon's SDF is a distance: |grad| = 1 away from the medial axis
    d = shape_sdf('triangle', torch.tensor([2., 2.01]), torch.tensor([.3, .3]))
    assert abs((d[1] - d[0]).item() / .01 - 1) < .05 or abs((d[1] - d[0]).item() / .01) <= 1.0001

def _grey(x): return (x - x.mean(1, keepdim=True)).abs().mean().item()

def test_domain_character():
    xs = {d: render(d, 64, seed=0)[0] for d in ALL}
    assert _grey(xs['sketch']) < .02 < _grey(xs['photo'])         # sketch is near-greyscale
    assert xs['sketch'].mean() > .7                               # dark lines on light paper
    assert _grey(xs['rendition']) > _grey(xs['photo'])            # rendition: saturated palettes
    def distinct(x): return torch.tensor([float(im.flatten(1).T.unique(dim=0).shape[0]) for im in x[:16]]).mean()
    assert distinct(xs['rendition']) < distinct(xs['photo']) / 2  # flat colours vs textures and grain
    # photo and v2 differ (a shift), but mildly compared to sketch
    def stats(x): return torch.cat([x.mean((0, 2, 3)), x.std((0, 2, 3))])
    assert (stats(xs['v2']) - stats(xs['photo'])).abs().sum() < (stats(xs['sketch']) - stats(xs['photo'])).abs().sum()

def _color_texture_features(x, bins=16):
    hist = lambda v: F.one_hot((v.flatten(2) * bins).long().clamp(0, bins - 1), bins).float().mean(2).flatten(1)
    h = hist(x)
    g = (x[..., 1:, :-1] - x[..., :-1, :-1]).abs() + (x[..., :-1, 1:] - x[..., :-1, :-1]).abs()
    hg = hist(g.mean(1, keepdim=True))
    return torch.cat([h, hg, x.mean((2, 3)), x.std((2, 3))], 1)

def _ridge(ftr, ytr, fte, yte, C, lam=1e-2):
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    A = torch.cat([(ftr - mu) / sd, torch.ones(len(ftr), 1)], 1).double()
    W = torch.linalg.solve(A.T @ A + lam * len(A) * torch.eye(A.shape[1], dtype=A.dtype), A.T @ F.one_hot(ytr, C).double())
    B = torch.cat([(fte - mu) / sd, torch.ones(len(fte), 1)], 1).double()
    return ((B @ W).argmax(1) == yte).float().mean().item()

def _nearest_centroid(ftr, ytr, fte, yte, C):
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    cen = torch.stack([((ftr - mu) / sd)[ytr == c].mean(0) for c in range(C)])
    return (torch.cdist((fte - mu) / sd, cen).argmin(1) == yte).float().mean().item()

@pytest.mark.parametrize('domain', ['photo', 'hard', 'rendition'])
def test_label_not_in_colour_or_texture(domain):
    "A colour/texture-only classifier (histograms of colour and gradient energy) trained on 2k images is at chance."
    xtr, ytr = render(domain, 2000, seed=0); xte, yte = render(domain, 2000, seed=0, split='val')
    ftr, fte = _color_texture_features(xtr), _color_texture_features(xte)
    # chance 0.1; the binomial std of an accuracy on 2000 images is ~0.007
    assert _ridge(ftr, ytr, fte, yte, NUM_CLASSES) < .1 + .035
    assert _nearest_centroid(ftr, ytr, fte, yte, NUM_CLASSES) < .1 + .035

def test_shape_is_learnable():
    "With the nuisances reduced to pencil lines (sketch), a small CNN on 2k images learns the classes in seconds: the label is the shape."
    torch.manual_seed(0)
    xtr, ytr = render('sketch', 2000, seed=0); xte, yte = render('sketch', 500, seed=0, split='val')
    def blk(i, o): return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    net = nn.Sequential(*blk(3, 16), nn.MaxPool2d(2), *blk(16, 32), nn.MaxPool2d(2), *blk(32, 64), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(64, NUM_CLASSES))
    E = 6; opt = torch.optim.AdamW(net.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=E * 2000 // 50)
    for _ in range(E):
        net.train()
        for i in torch.randperm(2000).split(50):
            loss = F.cross_entropy(net(xtr[i]), ytr[i]); opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    net.eval()
    with torch.no_grad(): acc = (net(xte).argmax(1) == yte).float().mean().item()
    assert acc > .5, acc                                          # chance is 0.1; measured 0.84

def test_dataset_and_cache(tmp_path):
    ds = SyntheticDataset('hard', 10, seed=2, split='test')
    x, y = render('hard', 10, seed=2, split='test')
    assert len(ds) == 10 and ds.num_classes == NUM_CLASSES and ds.classes == CLASSES
    img, lab = ds[3]
    assert torch.equal(img, x[3]) and lab == y[3].item() and isinstance(lab, int)
    a = SyntheticDataset('transfer', 9, seed=2, cache=tmp_path)
    assert a.path.exists() and a.classes == TRANSFER_CLASSES
    torch.save({'x': a.x, 'y': a.y.flip(0)}, a.path)             # the second instance must read the file, not re-render
    b = SyntheticDataset('transfer', 9, seed=2, cache=tmp_path)
    assert torch.equal(b.y, a.y.flip(0))
    c = SyntheticDataset('transfer', 9, seed=3, cache=tmp_path)   # another key, another file
    assert c.path != a.path
    xs, ys = SyntheticDataset('sketch', 5, start=4).tensors()
    assert torch.equal(xs, render('sketch', 5, start=4)[0])

@pytest.mark.parametrize('call,exc,msg', [
    (lambda: render('imagenet', 2), ValueError, 'valid domains: photo, v2, sketch, rendition, hard, transfer'),
    (lambda: render('photo', 2, split='training'), ValueError, 'valid splits: train, val, test'),
    (lambda: render('photo', -3), ValueError, 'n must be >= 0'),
    (lambda: render('photo', 2.5), TypeError, 'n must be an int'),
    (lambda: render('photo', 2, size=8), ValueError, 'size must be >= 16'),
    (lambda: render('photo', 2, seed='0'), TypeError, 'seed must be an int'),
    (lambda: render('photo', 2, seed=0.), TypeError, 'seed must be an int'),
    (lambda: render('photo', 2, start=-1), ValueError, 'start must be >= 0'),
    (lambda: SyntheticDataset('pics', 2), ValueError, 'valid domains'),
])
def test_errors(call, exc, msg):
    with pytest.raises(exc, match=msg): call()

def test_numpy_int_seed_ok():
    import numpy as np
    assert torch.equal(render('v2', 2, seed=np.int64(5))[0], render('v2', 2, seed=5)[0])
