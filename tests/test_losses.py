"losses: every objective against hand-computed values (KD direction and T², the authors' KD and DAD weights, reductions)."
import math
import numpy as np
import pytest, torch, torch.nn.functional as F
from robust_nb.losses import (LOSSES, ce, kd_loss, vanilla_kd_loss, jsd_loss, multihead_loss, dad_loss, dist_loss, ard_loss,
                              rslad_loss, dat_loss, dat_dad_loss, dad_aug_loss, advprop_loss, pyramid_at_loss)

def np_kl(p, q): return float(np.sum(p * np.log(p / q)))
def np_softmax(z): e = np.exp(z - z.max(-1, keepdims=True)); return e / e.sum(-1, keepdims=True)
def np_ce(s, y): return float(np.mean([-np.log(np_softmax(s)[i, y[i]]) for i in range(len(y))]))
def np_kd(t, s, T): pt, ps = np_softmax(t / T), np_softmax(s / T); return float(T * T * np.mean(np.sum(pt * np.log(pt / ps), 1)))

S = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.4, -1.0]])
T_ = torch.tensor([[2.0, 0.1, -0.3], [-0.4, 1.5, 0.2]])
Y = torch.tensor([0, 1])
Sn, Tn, Yn = S.double().numpy(), T_.double().numpy(), Y.numpy()

def test_leaf_module_imports_only_torch_and_core():
    import ast, inspect, robust_nb.losses as L
    mods = {a.module if isinstance(a, ast.ImportFrom) else n.name
            for a in ast.walk(ast.parse(inspect.getsource(L))) if isinstance(a, (ast.Import, ast.ImportFrom))
            for n in (a.names if isinstance(a, ast.Import) else [a])}
    assert {m.split('.')[0] for m in mods if m} <= {'__future__', 'torch', 'core'}, mods

def test_ce_hard_soft_and_empty():
    assert ce(S, Y).item() == pytest.approx(np_ce(Sn, Yn), rel=1e-6)
    assert ce(S, F.one_hot(Y, 3).float()).item() == pytest.approx(np_ce(Sn, Yn), rel=1e-6)
    z = torch.zeros(0, 3, requires_grad=True)
    out = ce(z, torch.zeros(0, dtype=torch.long)); out.backward()
    assert out.item() == 0 and z.grad is not None                 # 0, not NaN, and still a graph

def test_kd_direction_and_t2_scaling():
    # s = (0,0), t = (4 log 3, 0) at T=4: p_t = (3/4, 1/4), p_s = (1/2, 1/2); KD = 16 * KL(p_t || p_s)
    s, t = torch.zeros(1, 2), torch.tensor([[4 * math.log(3), 0.]])
    assert kd_loss(s, t, T=4).item() == pytest.approx(16 * (.75 * math.log(1.5) + .25 * math.log(.5)), rel=1e-6)
    ps, pt = np_softmax(Sn / 4), np_softmax(Tn / 4)
    fwd = 16 * np.mean([np_kl(pt[i], ps[i]) for i in range(2)])
    rev = 16 * np.mean([np_kl(ps[i], pt[i]) for i in range(2)])
    assert kd_loss(S, T_).item() == pytest.approx(fwd, rel=1e-5) and abs(fwd - rev) > 1e-3    # KL(teacher || student)
    assert kd_loss(S[:0], T_[:0]).item() == 0

def test_kd_no_gradient_to_teacher():
    t = T_.clone().requires_grad_(); s = S.clone().requires_grad_()
    kd_loss(s, t).backward()
    assert t.grad is None and s.grad.abs().sum() > 0

def test_vanilla_kd_is_the_authors_half_half():
    # the DAD authors' vanilla_kd_loss: 0.5 * CE + 0.5 * T^2 * KL, T = 4
    assert vanilla_kd_loss(S, T_, Y).item() == pytest.approx(.5 * np_ce(Sn, Yn) + .5 * np_kd(Tn, Sn, 4), rel=1e-5)
    assert vanilla_kd_loss(S, T_, Y, T=2, a=.25).item() == pytest.approx(.75 * np_ce(Sn, Yn) + .25 * np_kd(Tn, Sn, 2), rel=1e-5)

def test_dad_loss_authors_weights_hand_computed():
    sd, td = S.flip(0)[:1], T_.flip(0)[:1]            # one kept DAD sample in this batch
    ce_, kd = np_ce(Sn, Yn), np_kd(Tn, Sn, 4)
    kd_dad = np_kd(td.double().numpy(), sd.double().numpy(), 4)
    # CE + a·T²·KL(clean) + a·T²·KL(DAD), a = 0.5, T = 4 (Appendix C; the authors' DADLoss)
    assert dad_loss(S, T_, Y, sd, td).item() == pytest.approx(ce_ + .5 * kd + .5 * kd_dad, rel=1e-5)
    # the DAD term is a mean over the kept rows: repeating the kept row changes nothing
    assert dad_loss(S, T_, Y, sd.repeat(3, 1), td.repeat(3, 1)).item() == pytest.approx(ce_ + .5 * kd + .5 * kd_dad, rel=1e-5)
    # no CE on DAD samples: the DAD term vanishes when the student matches the teacher there
    assert dad_loss(S, T_, Y, td, td).item() == pytest.approx(ce_ + .5 * kd, rel=1e-5)
    # no kept sample in the batch: the term is 0, not NaN
    assert dad_loss(S, T_, Y, sd[:0], td[:0]).item() == pytest.approx(ce_ + .5 * kd, rel=1e-5)

def test_dist_loss_hand_computed():
    ps, pt = np_softmax(Sn), np_softmax(Tn)
    inter = 1 - np.mean([np.corrcoef(ps[i], pt[i])[0, 1] for i in range(2)])
    intra = 1 - np.mean([np.corrcoef(ps[:, j], pt[:, j])[0, 1] for j in range(3)])
    assert dist_loss(S, T_).item() == pytest.approx(inter + intra, rel=1e-4)
    assert dist_loss(S, T_, beta=2, gamma=0).item() == pytest.approx(2 * inter, rel=1e-4)
    ps2, pt2 = np_softmax(Sn / 2), np_softmax(Tn / 2)
    inter2 = 1 - np.mean([np.corrcoef(ps2[i], pt2[i])[0, 1] for i in range(2)])
    intra2 = 1 - np.mean([np.corrcoef(ps2[:, j], pt2[:, j])[0, 1] for j in range(3)])
    assert dist_loss(S, T_, T=2).item() == pytest.approx(4 * (inter2 + intra2), rel=1e-4)
    assert dist_loss(T_, T_).item() == pytest.approx(0, abs=1e-6)

def test_ard_rslad_hand_computed():
    s_aug = S + torch.tensor([[0.5, 0, 0], [0, 0, 0.7]]); An = s_aug.double().numpy()
    ce_ = np_ce(Sn, Yn)
    assert ard_loss(s_aug, T_, S, Y, T=4, alpha=0.5).item() == pytest.approx(0.5 * np_kd(Tn, An, 4) + 0.5 * ce_, rel=1e-5)
    assert rslad_loss(s_aug, T_, S).item() == pytest.approx(5 / 6 * np_kd(Tn, An, 1) + 1 / 6 * np_kd(Tn, Sn, 1), rel=1e-5)
    keep = torch.tensor([False, True])                 # only row 1 has an augmented sample: its teacher row is the target
    assert ard_loss(s_aug[1:], T_, S, Y, keep=keep).item() == pytest.approx(.5 * np_kd(Tn[1:], An[1:], 4) + .5 * ce_, rel=1e-5)
    assert rslad_loss(s_aug[1:], T_, S, keep=keep).item() == pytest.approx(5 / 6 * np_kd(Tn[1:], An[1:], 1) + 1 / 6 * np_kd(Tn, Sn, 1), rel=1e-5)

def test_dat_losses():
    adv = S.flip(1); An = adv.double().numpy()
    assert dat_loss(S, adv, Y).item() == pytest.approx(np_ce(Sn, Yn) + np_ce(An, Yn), rel=1e-5)
    exp = np_ce(Sn, Yn) + .5 * np_kd(Tn, Sn, 4) + .5 * np_kd(Tn[:1], Sn[:1], 4) + .5 * np_ce(An, Yn)
    assert dat_dad_loss(S, T_, Y, S[:1], T_[:1], adv).item() == pytest.approx(exp, rel=1e-5)
    assert dad_aug_loss(S, Y, adv[:1], Y[:1]).item() == pytest.approx(np_ce(Sn, Yn) + np_ce(An[:1], Yn[:1]), rel=1e-5)
    assert advprop_loss(S, adv, Y).item() == pytest.approx(np_ce(Sn, Yn) + np_ce(An, Yn), rel=1e-5)
    assert pyramid_at_loss(S, adv, Y, adv_weight=.25).item() == pytest.approx(np_ce(Sn, Yn) + .25 * np_ce(An, Yn), rel=1e-5)

def test_jsd_and_multihead_are_here_once():
    import robust_nb.augment as A, robust_nb.multihead as M, robust_nb.dad as D
    for mod, name in ((A, 'jsd_loss'), (M, 'kd_loss'), (D, 'kd_loss'), (D, '_kl'), (D, 'dat_loss')):
        assert name not in vars(mod) or vars(mod)[name] is vars(__import__('robust_nb.losses', fromlist=['x']))[name], (mod, name)
    lc, l1, l2 = torch.tensor([[60., -60.]]), torch.tensor([[-60., 60.]]), torch.zeros(1, 2)
    assert jsd_loss(lc, l1, l2).item() == pytest.approx(2 / 3 * math.log(2), abs=1e-5)
    lg, y, aug = torch.randn(3, 4, 5), torch.tensor([0, 1, 2, 3]), torch.tensor([True, False, False, True])
    tc, ta = torch.randn(4, 5), torch.randn(4, 5)
    assert multihead_loss(lg, y, aug, tc, ta, variant='wo_kd').item() == pytest.approx(
        (F.cross_entropy(torch.where(aug[:, None], lg[1], lg[0]), y) + F.cross_entropy(lg[2], y)).item(), rel=1e-6)
    assert set(LOSSES) >= {'ce', 'kd', 'vanilla_kd', 'jsd', 'multihead', 'dad', 'dist', 'ard', 'rslad', 'dat', 'dat+dad', 'dad_aug', 'advprop', 'pyramid_at'}
