import os
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from robust_nb.core import safe_load, make_generator
from robust_nb.engine import read_log
from robust_nb.augment import augmix, deepaugment, pixmix, mixup_cutmix
from robust_nb.losses import ce, jsd_loss
from robust_nb import teacher as T

def _model(c=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, c))

def _batch(n=6, c=4):
    g = make_generator(0)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, c, (n,), generator=g)

def _expect_jsd(m, x, y, v1, v2, w=12.):
    lc, l1, l2 = m(x), m(v1), m(v2)
    return (F.cross_entropy(lc, y) + w * jsd_loss(lc, l1, l2)).item()

def test_augmix_recipe_is_ce_plus_12_jsd():
    m, (x, y) = _model(), _batch()
    torch.manual_seed(1); loss, logs = T.RECIPES['augmix']()(m, (x, y))
    torch.manual_seed(1); v1, v2 = augmix(x), augmix(x)
    assert loss.item() == pytest.approx(_expect_jsd(m, x, y, v1, v2), rel=1e-5)
    assert logs['ce'] == pytest.approx(F.cross_entropy(m(x), y).item(), rel=1e-5)

def test_augmix_deepaugment_recipe_noises_half_then_jsd():
    m, (x, y) = _model(), _batch()
    torch.manual_seed(2); loss, _ = T.RECIPES['augmix+deepaugment']()(m, (x, y))
    torch.manual_seed(2); xd = deepaugment(x); v1, v2 = augmix(xd), augmix(xd)
    assert torch.equal(xd[3:], x[3:]) and not torch.equal(xd[:3], x[:3])
    assert loss.item() == pytest.approx(_expect_jsd(m, xd, y, v1, v2), rel=1e-5)

def test_pixmix_recipes_use_the_fractal_bank():
    m, (x, y) = _model(), _batch()
    pics = torch.rand(5, 3, 8, 8, generator=make_generator(3))
    torch.manual_seed(3); loss, _ = T.RECIPES['pixmix'](mixing_pics=pics)(m, (x, y))
    torch.manual_seed(3); xp = pixmix(x, pics)
    assert loss.item() == pytest.approx(F.cross_entropy(m(xp), y).item(), rel=1e-5)
    torch.manual_seed(4); loss, _ = T.RECIPES['augmix+pixmix'](mixing_pics=pics)(m, (x, y))
    torch.manual_seed(4); v1 = augmix(x); v2 = pixmix(x, pics)
    assert loss.item() == pytest.approx(_expect_jsd(m, x, y, v1, v2), rel=1e-5)
    bank = T.FractalBank(8, seed=0)
    assert torch.equal(bank(8, 'cpu'), T.FractalBank(8, seed=0)(8, 'cpu')) and bank(8, 'cpu') is bank(8, 'cpu')

def test_standard_recipe_soft_targets_match_hard():
    m, (x, y) = _model(), _batch()
    hard, _ = T.RECIPES['standard']()(m, (x, y))
    assert hard.item() == pytest.approx(F.cross_entropy(m(x), y).item(), rel=1e-6)
    assert ce(m(x), F.one_hot(y, 4).float()).item() == pytest.approx(hard.item(), rel=1e-5)
    loss, _ = T.RECIPES['standard'](mixup=mixup_cutmix(4))(m, (x, y))
    assert torch.isfinite(loss)

def test_all_recipes_backprop_and_bad_name():
    for name in T.RECIPES:
        m, b = _model(), _batch()
        loss, logs = T.RECIPES[name]()(m, {'x': b[0], 'y': b[1]})
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters()), name
    with pytest.raises(KeyError, match='valid names'): T.RECIPES['autoaugment']

def test_small_teacher_is_the_zoo_teacher():
    from robust_nb.embedded import create, resolve
    t = T.small_teacher(10)
    n = sum(p.numel() for p in t.parameters())
    assert n == sum(p.numel() for p in create('teacher', pretrained=False).parameters())     # one source of truth: the zoo config
    assert resolve('teacher')['width'] == 20 and n == 95_390 and 5 * n < 1_143_810     # every large student (>= 1.14M) has > 5x its parameters
    assert sum(p.numel() for p in T.small_teacher(10, width=40).parameters()) > 0.3e6
    t.eval()
    x = torch.rand(2, 3, 32, 32)
    assert t(x).shape == (2, 10)

def _spy_severity(monkeypatch):
    "The severities the recipes pass to `augmix`, recorded."
    seen, augmix_ = set(), T.augmix
    monkeypatch.setattr(T, 'augmix', lambda x, severity=3, *a, **k: (seen.add(severity), augmix_(x, severity, *a, **k))[1])
    return seen

def _image_folder(root, classes=('a', 'b'), n=4, size=16):
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy()).save(root / c / f'{i}.png')
    return root

def test_robustify_and_cli_end_to_end(tmp_path, monkeypatch):
    # runs through robust_nb.engine.fit when it is installed, else through teacher's documented fallback loop
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('ROBUST_NB_NO_PROGRESS', '1')
    sev = _spy_severity(monkeypatch)
    from robust_nb.cli import teacher_main
    assert teacher_main(['--recipe', 'augmix', '--n', '32', '--batch-size', '16', '--epochs', '1', '--ckpt-dir', str(tmp_path / 'ck'),
                         '--out', str(tmp_path / 't.pt')]) is None            # the console script (robust_nb.cli) exits 0
    out = tmp_path / 't.pt'
    d = safe_load(out)
    assert d['recipe'] == 'augmix' and d['num_classes'] == 10
    assert sev == {3} and d['severity'] == 3                                 # the CIFAR setting on the 32-px embedded data
    t = T.small_teacher(10); t.load_state_dict(d['state_dict'])
    # the embedded zoo's cached teacher (robust_nb.embedded.create('teacher')) is tested in test_embedded.py

# --- RandAugment and AugReg recipes (DAD's training recipes) ---
def test_randaugment_and_augreg_are_registered_recipes():
    assert {'randaugment', 'augreg'} <= set(T.RECIPES)
    assert T.AUGREG_SETTINGS['strong2'] == (20, .8) and T.AUGREG_SETTINGS['medium1'] == (15, .2)
    with pytest.raises(KeyError, match='valid: none, light1, light2, medium1, medium2, strong1, strong2'): T.augreg_loss('heavy')

def test_mixup_ce_equals_ce_on_mixed_one_hot_targets():
    m, (x, y) = _model(), _batch()
    torch.manual_seed(2); loss, logs = T.mixup_ce(m, x, y, .5)
    lam = logs['lam']; assert 0 < lam < 1
    soft = lam * F.one_hot(y, 4).float() + (1 - lam) * F.one_hot(y.flip(0), 4).float()
    assert loss.item() == pytest.approx(ce(m(lam * x + (1 - lam) * x.flip(0)), soft).item(), rel=1e-5)
    assert T.mixup_ce(m, x, y, 0.)[0].item() == pytest.approx(F.cross_entropy(m(x), y).item(), rel=1e-6)

def test_randaugment_magnitude_above_10_is_not_clipped():
    ops = T.randaugment_op(2, 20).ops
    assert all(op.magnitude == 20 and op.magnitude_max == 20 for op in ops)
    x = _batch()[0]; xa = T.randaugment_batch(x, T.randaugment_op(2, 20))
    assert xa.shape == x.shape and xa.min() >= 0 and xa.max() <= 1 and not torch.equal(xa, x)

@pytest.mark.parametrize('recipe,kw', [('randaugment', {}), ('augreg', {}), ('augreg', {'setting': 'light1'})])
def test_recipe_tiny_training_step_is_seeded(recipe, kw):
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 4, (16,))
    run = lambda: T.robustify_teacher(lambda: _model(), (x, y), recipe, kw, seed=0, max_steps=2, batch_size=8, progress=False)
    a, b = run(), run()
    assert all(torch.isfinite(torch.tensor(h['loss'])) for h in a.history if 'loss' in h)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)                   # timm's RandAugment draws from the seeded `random`
    assert not torch.equal(sa['1.weight'], _model().state_dict()['1.weight'])

def test_augreg_loader_transform():
    from PIL import Image
    import numpy as np
    t = T.augreg_transform(24, 'medium2')(Image.fromarray(np.full((30, 40, 3), 77, np.uint8)))
    assert t.shape == (3, 24, 24) and t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1
