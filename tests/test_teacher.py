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

def test_small_teacher():
    t = T.small_teacher(10)
    n = sum(p.numel() for p in t.parameters())
    assert 0.3e6 < n < 0.5e6
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
