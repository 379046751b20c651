"Adversarial shifts (DAD Table 12): FGSM, PGD, AutoAttack on a tiny model, through `evaluate` and its cache."
import os
import pytest, torch
from torch import nn
from robust_nb import evaluate as E
from robust_nb.data import Shift, Suite

torch.manual_seed(0)
K = 10
EPS = dict(fgsm=8/255, pgd=8/255, autoattack=.25)   # a budget that breaks every image keeps AutoAttack out of its long FAB/Square runs

class _Labelled(torch.utils.data.Dataset):
    "Images labelled by the model itself, so clean accuracy is 100% and every attack has something to break."
    def __init__(self, model, n=24, seed=0):
        self.x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad(): self.y = model(self.x).argmax(1)
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], int(self.y[i])
    def __repr__(self): return f"_Labelled(n={len(self)}, digest={E._h(self.x, self.y)})"

def _model(): return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, K)).eval()

@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path)); monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path/'robust_nb'))
    m = _model(); ds = _Labelled(m)
    return m, ds, Shift('clean', ds, 'clean')

def test_registry_and_unknown_names(setup):
    _, _, clean = setup
    assert {'fgsm', 'pgd', 'autoattack'} <= set(E.ATTACKS)
    with pytest.raises(KeyError, match='fgsm, pgd, autoattack'): E.adversarial_shift(clean, 'cw')
    with pytest.raises(TypeError, match=r"has no setting\(s\) \['step'\].*'steps'"): E.adversarial_shift(clean, 'pgd', step=3)
    with pytest.raises(ValueError, match='eps must be >= 0'): E.adversarial_shift(clean, 'fgsm', -1)
    with pytest.raises(ValueError, match='adversarial_shift'): Shift('x', clean.dataset, 'adversarial')
    s = E.adversarial_shift(clean, 'pgd', 8/255, steps=5)
    assert s.name == 'pgd-eps8_255-steps5' and s.kind == 'adversarial' and s.info['steps'] == 5 and s.info['alpha'] is None

def test_fgsm_is_the_signed_input_gradient():
    "For logits Wx + b, grad_x CE = W^T (softmax - onehot): FGSM by hand."
    m = _model(); x = torch.rand(4, 3, 8, 8); y = torch.tensor([0, 3, 5, 9]); eps = .03
    p = m(x).softmax(1) - nn.functional.one_hot(y, K)
    g = (p @ m[1].weight).view_as(x)
    torch.testing.assert_close(E.fgsm(m, x, y, eps), (x + eps * g.sign()).clamp(0, 1))

@pytest.mark.parametrize('attack', ['fgsm', 'pgd', 'autoattack'])
def test_attack_bounds_and_eps_zero(setup, attack):
    if attack == 'autoattack': pytest.importorskip('autoattack')
    m, ds, _ = setup
    x, y = ds.x, ds.y; g = torch.Generator().manual_seed(1); eps = EPS[attack]
    xa = E.ATTACKS[attack](m, x, y, eps, generator=g)
    assert xa.shape == x.shape and 0 <= xa.min() and xa.max() <= 1
    assert (xa - x).abs().max() <= eps + 1e-6
    assert torch.equal(E.ATTACKS[attack](m, x, y, 0., generator=g), x)           # eps = 0 changes nothing

@pytest.mark.parametrize('attack', ['fgsm', 'pgd', 'autoattack'])
def test_evaluate_under_attack(setup, attack):
    if attack == 'autoattack': pytest.importorskip('autoattack')
    m, ds, clean = setup
    suite = Suite('toy', K, [str(i) for i in range(K)],
                  [clean, E.adversarial_shift(clean, attack, EPS[attack]), E.adversarial_shift(clean, attack, 0., name='eps0')])
    r = E.evaluate(m, suite, batch_size=8, progress=False)
    t = r.shifts.set_index('shift')
    assert t.top1['clean'] == 1 and t.top1.iloc[1] <= t.top1['clean'] and t.top1.iloc[1] < 1
    assert t.loc['eps0', ['top1', 'nll', 'ece']].tolist() == t.loc['clean', ['top1', 'nll', 'ece']].tolist()
    assert list(t.kind) == ['clean', 'adversarial', 'adversarial'] and suite[1].name in r.summary()
    r2 = E.evaluate(m, suite, batch_size=8, progress=False)                      # cached like the rest
    assert r2.info['cached_shifts'] == 3 and r2.shifts.top1.tolist() == r.shifts.top1.tolist()

def test_fingerprint_holds_every_setting(setup):
    _, _, clean = setup
    fp = lambda s, **kw: E.shift_fingerprint(s, **kw)
    a = E.adversarial_shift(clean, 'pgd', 4/255, name='same')
    assert fp(a) == fp(E.adversarial_shift(clean, 'pgd', 4/255, name='same'))
    assert len({fp(a), fp(E.adversarial_shift(clean, 'pgd', 8/255, name='same')), fp(E.adversarial_shift(clean, 'pgd', 4/255, steps=3, name='same')),
                fp(E.adversarial_shift(clean, 'fgsm', 4/255, name='same')), fp(a, seed=1), fp(a, batch_size=7)}) == 6

def test_attack_scores_the_shifts_labels(setup):
    "A class mask is applied before the attack: masked-out classes never become the attacked prediction."
    m, ds, _ = setup
    mask = torch.zeros(K, dtype=torch.bool); mask[:3] = True
    with torch.no_grad(): y = m(ds.x).masked_fill(~mask, float('-inf')).argmax(1)
    masked = Shift('masked', torch.utils.data.TensorDataset(ds.x, y), 'clean', class_mask=mask)
    s = E.adversarial_shift(masked, 'pgd', 16/255)
    xa = E._adversarial_batch(m, s, ds.x, y, 'logits', torch.Generator().manual_seed(0))
    with torch.no_grad(): pred = s.map_logits(m(xa)).argmax(1)
    assert (pred < 3).all() and (pred != y).any()

def test_autoattack_missing_package_names_the_install(setup, monkeypatch):
    import builtins
    real = builtins.__import__
    def fake(name, *a, **kw):
        if name == 'autoattack': raise ImportError(name)
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, '__import__', fake)
    m, ds, _ = setup
    with pytest.raises(ImportError, match='pip install git\\+https://github.com/fra31/auto-attack'):
        E.autoattack(m, ds.x, ds.y, 4/255)
