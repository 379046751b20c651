"DAD: losses vs hand-computed values, teacher attack, offline generation (filter, integer labels, resume, sharding), pitfalls."
import math, json, copy
from types import SimpleNamespace
import numpy as np
from safetensors.torch import load_file
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from robust_nb.dad import (Teacher, as_teacher, attack, generate_dad, DADShards, DADPairs, write_manifest, dat_example, METHODS,
                           method_loss, ATTACK_PRESETS, DEFAULT_PRESET, attack_settings, dad_chunk)
from robust_nb.losses import dad_loss, ard_loss
from robust_nb.core import make_generator

def np_kl(p, q): return float(np.sum(p * np.log(p / q)))
def np_softmax(z): e = np.exp(z - z.max(-1, keepdims=True)); return e / e.sum(-1, keepdims=True)

# ---------------------------------------------------------------- losses: see tests/test_losses.py
class Lin(nn.Module):
    def __init__(self):
        super().__init__(); self.fc = nn.Linear(12, 3)
        with torch.no_grad(): self.fc.weight.copy_(torch.linspace(-1, 1, 36).view(3, 12)); self.fc.bias.zero_()
    def forward(self, x): return self.fc(x.flatten(1))

class Id(nn.Module):
    grad = 'identity'
    def forward(self, x): return x

def test_attack_closed_form_linear():
    # CE of a linear softmax model: dCE/dx = W^T (p - e_y); one L∞ step of lr 0.1 is x + 0.1 sign(grad), clipped to [0,1]
    m = Lin(); x = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(0)) * .6 + .2; y = torch.tensor([0, 1, 2, 0])
    p = F.softmax(m(x), -1); e = F.one_hot(y, 3).float()
    g = ((p - e) @ m.fc.weight).view_as(x)
    torch.testing.assert_close(attack(m, x, y), (x + 0.1 * g.sign()).clamp(0, 1))
    assert not any(q.grad is not None for q in m.parameters())

def test_dat_loss_and_no_param_grad_from_attack():
    m = Lin(); x = torch.rand(4, 3, 2, 2) * .6 + .2; y = torch.tensor([0, 1, 2, 0])
    xa = attack(m, x, y)
    expect = F.cross_entropy(m(x), y) + F.cross_entropy(m(xa), y)
    loss = METHODS['dat'](m, (x, y), vq=Id())
    assert all(q.grad is None for q in m.parameters())
    torch.testing.assert_close(loss, expect)
    vq = Id(); vq.grad = 'none'
    dat_example(m, vq, x, y); assert vq.grad == 'none'   # restored after the attack

def test_methods_run_and_agree_with_losses():
    torch.manual_seed(0)
    m, teacher = Lin(), as_teacher(Lin())
    x = torch.rand(4, 3, 2, 2); y = torch.tensor([0, 1, 2, 0]); xd = torch.rand(4, 3, 2, 2); has = torch.tensor([True, False, True, True])
    batch = (x, y, xd, has)
    for name in METHODS:
        loss = method_loss(name, teacher=teacher, vq=Id())(m, batch)
        assert loss.ndim == 0 and torch.isfinite(loss), name
    with torch.no_grad(): t, td = teacher(x), teacher(xd)
    torch.testing.assert_close(method_loss('dad', teacher)(m, batch), dad_loss(m(x), t, y, m(xd[has]), td[has]))
    torch.testing.assert_close(method_loss('dad')(m, batch + (t, td)), dad_loss(m(x), t, y, m(xd[has]), td[has]))  # cached logits
    torch.testing.assert_close(method_loss('ard', teacher)(m, batch), ard_loss(m(xd[has]), t, m(x), y, keep=has))
    aug = F.cross_entropy(m(x), y) + F.cross_entropy(m(xd)[has], y[has])
    torch.testing.assert_close(method_loss('dad_aug')(m, batch), aug)
    with pytest.raises(ValueError, match='pass a teacher'): method_loss('kd')(m, batch)
    with pytest.raises(KeyError, match='valid names'): method_loss('dad2')

# ---------------------------------------------------------------- generation
class Level(nn.Module):
    "A teacher reading the class off the image brightness: class c <-> level c/(C-1)."
    def __init__(self, C=12): super().__init__(); self.C = C
    def forward(self, x):
        lv = torch.linspace(0, 1, self.C)
        return -(x.mean((1, 2, 3))[:, None] - lv[None]).abs() * 1000

def level_data(C=12, reps=3):
    y = torch.arange(C).repeat(reps)
    x = (y.float() / (C - 1)).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    return x, y

def test_labels_round_trip_not_string_sorted(tmp_path):
    x, y = level_data()
    man = generate_dad(Level(), Id(), (x, y), tmp_path, eps=0.01, lr=0.01, chunk_size=7, progress_bar=False)
    assert man['kept_fraction'] == 1.0 and man['complete']
    ds = DADShards(tmp_path)
    assert ds.index.tolist() == list(range(len(y)))
    assert ds.labels.tolist() == y.tolist()                     # 0..11 exactly, in order (not "0","1","10","11","2",...)
    assert [ds[i][1] for i in range(len(ds))] == y.tolist() and isinstance(ds[0][1], int)
    assert ds.labels.dtype == torch.int64

class Bright(nn.Module):
    def forward(self, x): m = x.mean((1, 2, 3)) - .5; return torch.stack([-m, m], 1) * 10

def bright_data():
    x = torch.cat([torch.full((3, 3, 4, 4), v) for v in (.2, .45, .55, .8)])
    return x, torch.tensor([0] * 6 + [1] * 6)

def test_filter_really_filters(tmp_path):
    x, y = bright_data()
    man = generate_dad(Bright(), Id(), (x, y), tmp_path, preset='linf', chunk_size=5, progress_bar=False)
    assert man['n_kept'] == 6 and man['kept_fraction'] == pytest.approx(0.5)
    ds = DADShards(tmp_path)
    assert ds.index.tolist() == [0, 1, 2, 9, 10, 11]
    # the filter checks the discretised sample: a discretiser that maps everything to black drops every class-1 sample
    class Black(nn.Module):
        def forward(self, x): return torch.zeros_like(x)
    man2 = generate_dad(Bright(), Black(), (x, y), tmp_path / 'black', preset='linf', chunk_size=5, progress_bar=False)
    assert man2['n_kept'] == 6 and DADShards(tmp_path / 'black').labels.tolist() == [0] * 6

def test_teacher_normalisation_pitfall(tmp_path):
    net = Lin()
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    t = Teacher(net, mean, std)
    x = torch.rand(2, 3, 2, 2)
    ref = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(t(x), ref)
    xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with pytest.raises(ValueError, match='normalised'): t(xn)            # normalising outside is detected
    with pytest.raises(ValueError, match='normalised'):
        generate_dad(t, Id(), (xn, torch.zeros(2, dtype=torch.long)), tmp_path, progress_bar=False)
    t.train(); assert not t.training and not t.model.training         # a teacher stays in eval mode

class Counting(nn.Module):
    def __init__(self, inner, fail_after=None): super().__init__(); self.inner, self.calls, self.fail_after = inner, 0, fail_after
    def forward(self, x):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after: raise KeyboardInterrupt("killed")
        return self.inner(x)

def test_resume_after_kill_no_duplicates_no_gaps(tmp_path):
    x, y = level_data(reps=4)     # 48 items, chunk 10 -> 5 chunks
    ref = generate_dad(Level(), Id(), (x, y), tmp_path / 'ref', eps=.01, lr=.01, chunk_size=10, progress_bar=False)
    killer = Counting(Level(), fail_after=5)   # 2 teacher calls per chunk (attack + check): dies inside chunk 3
    with pytest.raises(KeyboardInterrupt):
        generate_dad(killer, Id(), (x, y), tmp_path / 'run', eps=.01, lr=.01, chunk_size=10, progress_bar=False)
    assert sorted(p.name for p in (tmp_path / 'run').glob('shard_*')) == ['shard_000000.safetensors', 'shard_000001.safetensors']
    assert not list((tmp_path / 'run').glob('.*tmp'))
    with pytest.raises(RuntimeError, match='incomplete'): DADShards(tmp_path / 'run')
    assert len(DADShards(tmp_path / 'run', allow_partial=True)) == 20
    again = Counting(Level())
    man = generate_dad(again, Id(), (x, y), tmp_path / 'run', eps=.01, lr=.01, chunk_size=10, progress_bar=False)
    assert again.calls == 2 * 3               # only the 3 missing chunks were computed
    assert man['complete'] and man['n_in'] == 48 and man['n_kept'] == ref['n_kept']
    ds = DADShards(tmp_path / 'run')
    assert ds.index.tolist() == list(range(48))
    for c in range(5):
        a, b = (load_file(str(tmp_path / d / f'shard_{c:06d}.safetensors')) for d in ('run', 'ref'))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match='other settings'):
        generate_dad(Level(), Id(), (x, y), tmp_path / 'run', eps=.02, chunk_size=10, progress_bar=False)

def test_multi_process_split(tmp_path):
    x, y = level_data(reps=4)
    ref = generate_dad(Level(), Id(), (x, y), tmp_path / 'ref', eps=.01, lr=.01, chunk_size=10, progress_bar=False)
    seen = {}
    for r in (1, 0):    # the main process finishes last and writes the manifest
        acc = SimpleNamespace(process_index=r, num_processes=2, is_main_process=r == 0, device=torch.device('cpu'), wait_for_everyone=lambda: None)
        t = Counting(Level())
        man = generate_dad(t, Id(), (x, y), tmp_path / 'mp', eps=.01, lr=.01, chunk_size=10, accelerator=acc, progress_bar=False)
        seen[r] = t.calls // 2
        if r == 1: assert man == {}
    assert seen == {0: 3, 1: 2}     # chunks 0,2,4 and 1,3
    assert man['complete'] and DADShards(tmp_path / 'mp').index.tolist() == DADShards(tmp_path / 'ref').index.tolist()

def test_dataset_input_and_pairs(tmp_path):
    x, y = bright_data()
    ds_in = [(x[i], int(y[i])) for i in range(len(y))]
    generate_dad(Bright(), Id(), ds_in, tmp_path, chunk_size=8, progress_bar=False)
    sh = DADShards(tmp_path)
    pairs = DADPairs((x, y), sh, teacher=Bright())
    kept = set(sh.index.tolist())
    for i in range(len(y)):
        xi, yi, xd, has, t, td = pairs[i]
        assert has == (i in kept) and yi == int(y[i])
        if not has: assert torch.equal(xd, xi) and torch.equal(td, t)
    tx = pairs.tensors()
    assert len(tx) == 6 and tx[3].sum().item() == len(sh)
    j = sh.index[0].item()
    torch.testing.assert_close(tx[2][j], sh[0][0])

def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='generate it first'): DADShards(tmp_path)
    with pytest.raises(ValueError, match="norm must be"): attack(Lin(), torch.rand(1, 3, 2, 2), torch.tensor([0]), norm='l1')
    with pytest.raises(ValueError, match='equal length'):
        generate_dad(Level(), Id(), (torch.rand(3, 3, 4, 4), torch.tensor([0, 1])), tmp_path, progress_bar=False)

def test_imagenet_c_not_resized_again(tmp_path):
    "Pitfall: ImageNet-C images are already 224 px; robust_nb.data.imagenet_c loads them pixel-exact, with no Resize+CenterCrop."
    data = pytest.importorskip('robust_nb.data')
    from PIL import Image
    d = tmp_path / 'gaussian_noise' / '3' / 'n01440764'; d.mkdir(parents=True)
    arr = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    Image.fromarray(arr).save(d / 'a.png')
    shift = data.imagenet_c(tmp_path, 'gaussian_noise', 3, strict=False)
    img, label = shift.dataset[0]
    assert label == 0 and img.shape == (3, 224, 224)
    assert torch.equal((img * 255).round().to(torch.uint8), torch.from_numpy(arr).permute(2, 0, 1))
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(d / 'b.png')
    with pytest.raises(ValueError, match='should hold 224x224'):
        s = data.imagenet_c(tmp_path, 'gaussian_noise', 3, strict=False); [s.dataset[i] for i in range(len(s.dataset))]

def test_small_cnn_normalises_inside():
    from robust_nb.models import small_cnn
    m = small_cnn(10).eval()
    x = torch.rand(2, 3, 16, 16)
    assert m(x).shape == (2, 10)
    with pytest.raises(ValueError, match='normalised'): m(x * 4 - 2)

def test_resume_refuses_other_teacher_or_vq(tmp_path):
    x, y = bright_data()
    generate_dad(Bright(), Id(), (x, y), tmp_path, chunk_size=5, max_chunks=1, progress_bar=False)
    class Scaled(nn.Module):
        def __init__(self): super().__init__(); self.s = nn.Parameter(torch.ones(1))
        def forward(self, x): return x * self.s
    with pytest.raises(ValueError, match='other settings'):
        generate_dad(Bright(), Scaled(), (x, y), tmp_path, chunk_size=5, progress_bar=False)

# ---------------------------------------------------------------- hand-computed: attack, method wrappers, DAT, VQGAN sampling
def lin(w):
    m = Lin()
    with torch.no_grad(): m.fc.weight.copy_(w)
    return m

W_S, W_T = torch.sin(torch.arange(36.) * 0.7).view(3, 12), torch.cos(torch.arange(36.) * 1.3).view(3, 12)

def np_ce(s, y): return float(np.mean([-np.log(np_softmax(s)[i, y[i]]) for i in range(len(y))]))
def np_kd_rows(t, s, T): pt, ps = np_softmax(t / T), np_softmax(s / T); return T * T * np.sum(pt * np.log(pt / ps), 1)
def np_flat(x): return x.double().numpy().reshape(len(x), -1)

def small_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, xd = torch.rand(4, 3, 2, 2, generator=g) * .6 + .2, torch.rand(4, 3, 2, 2, generator=g) * .6 + .2
    return x, torch.tensor([0, 1, 2, 0]), xd, torch.tensor([True, False, True, True])

class Spy(nn.Module):
    "Counts calls and records whether autograd was on (grad mode or a grad-requiring input)."
    def __init__(self, inner): super().__init__(); self.inner, self.calls, self.grad, self.sizes = inner, 0, [], []
    def forward(self, x):
        self.calls += 1; self.grad.append(torch.is_grad_enabled() and x.requires_grad); self.sizes.append(len(x))
        return self.inner(x)

def test_attack_steps0_and_one_step_hand_computed():
    m = Spy(lin(W_S)); x, y, _, _ = small_batch()
    out = attack(m, x, y, steps=0)
    assert torch.equal(out, x) and out is not x and m.calls == 0          # no attack: no forward, no gradient
    assert torch.equal(attack(m, x, y, eps=0.), x) and m.calls == 0
    # CE of a linear softmax model: dCE/dx_i = W^T (p_i - e_y_i) / B; the 1/B never changes a sign or a direction
    W, X = W_S.double().numpy(), np_flat(x)
    G = (np_softmax(X @ W.T) - np.eye(3)[y.numpy()]) @ W
    assert np.abs(G).min() > 1e-4                                            # no sign is decided by rounding
    for eps, lr in ((0.1, 0.1), (0.05, 0.1)):                                # lr > eps: the step is cut back to the ball
        exp = np.clip(X + np.clip(lr * np.sign(G), -eps, eps), 0, 1)
        np.testing.assert_allclose(np_flat(attack(m, x, y, eps=eps, lr=lr)), exp, rtol=0, atol=1e-6)
    u = G / np.linalg.norm(G, axis=1, keepdims=True)                         # L2: a normalised-gradient step
    np.testing.assert_allclose(np_flat(attack(m, x, y, eps=1., norm='l2', lr=0.3)), np.clip(X + 0.3 * u, 0, 1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np_flat(attack(m, x, y, eps=0.2, norm='l2', lr=0.3)), np.clip(X + 0.2 * u, 0, 1), rtol=0, atol=1e-6)
    assert m.calls == 4 and all(p.grad is None for p in m.parameters())

def test_method_wrappers_hand_computed():
    m, teacher = lin(W_S), as_teacher(lin(W_T))
    x, y, xd, has = small_batch(); batch = (x, y, xd, has)
    Ws, Wt, yn, h = W_S.double().numpy(), W_T.double().numpy(), y.numpy(), has.numpy()
    S, SD, T, TD = np_flat(x) @ Ws.T, np_flat(xd) @ Ws.T, np_flat(x) @ Wt.T, np_flat(xd) @ Wt.T
    ce = np_ce(S, yn)
    ps, pt = np_softmax(S), np_softmax(T)
    inter = 1 - np.mean([np.corrcoef(ps[i], pt[i])[0, 1] for i in range(4)])
    intra = 1 - np.mean([np.corrcoef(ps[:, j], pt[:, j])[0, 1] for j in range(3)])
    expect = {
        'ce': ce,
        'kd': .5 * ce + .5 * np_kd_rows(T, S, 4).mean(),                                 # the authors' 0.5·CE + 0.5·KD, T = 4
        'dist': ce + inter + intra,                                                      # T = 1, β = γ = 1
        'ard': .5 * np_kd_rows(T, SD, 4)[h].mean() + .5 * ce,                            # student on x_dad vs teacher on x
        'rslad': 5 / 6 * np_kd_rows(T, SD, 1)[h].mean() + 1 / 6 * np_kd_rows(T, S, 1).mean(),
        'dad': ce + .5 * np_kd_rows(T, S, 4).mean() + .5 * np_kd_rows(TD, SD, 4)[h].mean(),   # Appendix C: a on both KLs
        'dad_aug': ce + float(np.mean([-np.log(np_softmax(SD)[i, yn[i]]) for i in range(4) if h[i]])),
    }
    for name, exp in expect.items():
        assert method_loss(name, teacher)(m, batch).item() == pytest.approx(exp, rel=1e-4), name
    with torch.no_grad(): cached = batch + (teacher(x), teacher(xd))                      # precomputed logits: same values
    for name in ('kd', 'dist', 'ard', 'rslad', 'dad'):
        assert method_loss(name)(m, cached).item() == pytest.approx(expect[name], rel=1e-4), name
    # hyper-parameters pass through: KD at T = 2, and ARD's published T = 30, α = 1 (no CE)
    assert method_loss('kd', teacher, T=2.)(m, batch).item() == pytest.approx(.5 * ce + .5 * np_kd_rows(T, S, 2).mean(), rel=1e-4)
    assert method_loss('ard', teacher, T=30., alpha=1.)(m, batch).item() == pytest.approx(np_kd_rows(T, SD, 30)[h].mean(), rel=1e-4)

class Q4(nn.Module):
    "A 5-level discretiser: Q(x) = round(4x)/4."
    def forward(self, x): return (x * 4).round() / 4

def test_dat_and_dat_dad_hand_computed():
    m, teacher = lin(W_S), as_teacher(lin(W_T))
    x, y, xd, has = small_batch(1); batch = (x, y, xd, has)
    Ws, Wt, yn, h = W_S.double().numpy(), W_T.double().numpy(), y.numpy(), has.numpy()
    X, XD = np_flat(x), np_flat(xd)
    # DAT's sample Q(Q(x) + δ): discretise, one L∞ step of lr = ε = 0.2 on the student's CE from Q(x), discretise again
    Q0 = np.round(4 * X) / 4
    G = (np_softmax(Q0 @ Ws.T) - np.eye(3)[yn]) @ Ws
    assert np.abs(G).min() > 1e-4
    XQ = np.round(4 * np.clip(Q0 + 0.2 * np.sign(G), 0, 1)) / 4
    S, SD, SQ, T, TD = X @ Ws.T, XD @ Ws.T, XQ @ Ws.T, X @ Wt.T, XD @ Wt.T
    dat = np_ce(S, yn) + np_ce(SQ, yn)
    datdad = np_ce(S, yn) + .5 * np_kd_rows(T, S, 4).mean() + .5 * np_kd_rows(TD, SD, 4)[h].mean() + .5 * np_ce(SQ, yn)
    np.testing.assert_array_equal(np_flat(dat_example(m, Q4(), x, y, eps=.2, lr=.2)), XQ)
    assert method_loss('dat', vq=Q4(), eps=.2, lr=.2)(m, batch).item() == pytest.approx(dat, rel=1e-5)
    assert method_loss('dat+dad', teacher, Q4(), eps=.2, lr=.2)(m, batch).item() == pytest.approx(datdad, rel=1e-5)
    # an attack started from x instead, Q(x + δ) with the same (straight-through) step, gives another sample here
    assert not np.array_equal(np.round(4 * np.clip(X + 0.2 * np.sign(G), 0, 1)) / 4, XQ)

def test_vqgan_sampling_without_gradients(tmp_path):
    "Table 11's baseline: generate with steps=0 (Q(x), no attack, no gradient), train with 'vqgan_sample' (= eq. 9)."
    g = torch.Generator().manual_seed(2)
    x = torch.rand(8, 3, 2, 2, generator=g)
    tnet = lin(W_T)
    Q = np.round(4 * np_flat(x)) / 4
    with torch.no_grad(): pred = tnet(torch.from_numpy(Q).float().view_as(x)).argmax(1)
    y = pred.clone(); y[4:] = (pred[4:] + 1) % 3                    # the teacher is right on Q(x) for items 0..3 only
    spy = Spy(tnet)
    man = generate_dad(spy, Q4(), (x, y), tmp_path, steps=0, chunk_size=8, progress_bar=False)
    assert spy.calls == 1 and spy.grad == [False]                    # one forward (the filter), never a gradient
    assert man['n_kept'] == 4
    sh = DADShards(tmp_path)
    assert sh.index.tolist() == [0, 1, 2, 3] and sh.labels.tolist() == y[:4].tolist()
    Q8 = np.round(255 * Q) / 255                                      # stored as 8-bit images
    np.testing.assert_allclose(np_flat(torch.stack([sh[i][0] for i in range(4)])), Q8[:4], rtol=0, atol=1e-7)
    # the 'vqgan_sample' loss on those pairs: CE + KD(x) + a·KD(Q(x)) over the kept items
    m = lin(W_S); pairs = DADPairs((x, y), sh, teacher=tnet)
    batch = torch.utils.data.default_collate([pairs[i] for i in range(8)])
    Ws, Wt, yn = W_S.double().numpy(), W_T.double().numpy(), y.numpy()
    X = np_flat(x)
    exp = np_ce(X @ Ws.T, yn) + .5 * np_kd_rows(X @ Wt.T, X @ Ws.T, 4).mean() + .5 * np_kd_rows(Q8[:4] @ Wt.T, Q8[:4] @ Ws.T, 4).mean()
    assert method_loss('vqgan_sample')(m, batch).item() == pytest.approx(exp, rel=1e-5)
    assert method_loss('vqgan_sample', tnet)(m, batch[:4]).item() == pytest.approx(exp, rel=1e-5)   # teacher per batch

# (the robust_nb_dad_generate console script is tested in tests/test_cli.py)
# ---------------------------------------------------------------- lazy DADPairs + distil
class ItemDS(torch.utils.data.Dataset):
    def __init__(self, x, y): self.x, self.y = x, y
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return self.x[i], int(self.y[i])

def test_distil_streams_from_shards_without_tensors(tmp_path, monkeypatch):
    from robust_nb.dad import distil
    x, y = bright_data()
    generate_dad(Bright(), Id(), (x, y), tmp_path, chunk_size=5, progress_bar=False)
    def student(): torch.manual_seed(0); return nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    kw = dict(epochs=2, batch_size=4, lr=1e-2, progress=False)
    mat = DADPairs((x, y), DADShards(tmp_path), teacher=Bright())    # small tensors: materialised, as before
    assert mat.materialise and mat.t is not None
    ref = {m: distil(student(), m, mat, **kw).state_dict() for m in ('dad', 'dad_aug')}
    def boom(self): raise AssertionError("the streaming path must not stack the dataset")
    monkeypatch.setattr(DADShards, 'tensors', boom); monkeypatch.setattr(DADPairs, 'tensors', boom)
    lazy = DADPairs(ItemDS(x, y), DADShards(tmp_path), teacher=Bright())   # a Dataset: streams
    assert not lazy.materialise and lazy.xd is None and lazy.t is None
    for m in ('dad', 'dad_aug'):
        got = distil(student(), m, lazy, **kw).state_dict()                # teacher logits per batch (from lazy.teacher)
        for k in got:
            if m == 'dad_aug': assert torch.equal(got[k], ref[m][k]), k    # the same batches, bit for bit
            else: torch.testing.assert_close(got[k], ref[m][k], rtol=1e-5, atol=1e-6)
    forced = DADPairs((x, y), DADShards(tmp_path), materialise=False)
    assert not forced.materialise
    with pytest.raises(ValueError, match='pass a teacher'): distil(student(), 'kd', forced, **kw)
    got = distil(student(), 'dad', forced, teacher=Bright(), **kw).state_dict()
    for k in got: torch.testing.assert_close(got[k], ref['dad'][k], rtol=1e-5, atol=1e-6)

# ---------------------------------------------------------------- ImageFolder data
def make_folder(root, C=12):
    from PIL import Image
    for c in range(C):
        d = root / str(c); d.mkdir(parents=True)
        for k in range(2): Image.fromarray(np.full((20, 28, 3), 10 * c + k, np.uint8)).save(d / f'{k}.png')   # 28x20 px

def test_image_folder_explicit_integer_labels(tmp_path):
    pytest.importorskip('torchvision')
    from robust_nb.data import image_folder
    make_folder(tmp_path)
    ds, classes = image_folder(tmp_path, size=16)
    assert classes == [str(c) for c in range(12)]                    # by value: '10', '11' after '9', not after '1'
    for i in range(len(ds)):
        img, y = ds[i]
        assert img.shape == (3, 16, 16) and isinstance(y, int)
        assert y == i // 2 and round(img[0, 8, 8].item() * 255) == 10 * y + i % 2   # the image is from folder str(y)
    ds2, cl2 = image_folder(tmp_path, classes=['3', '11'], size=8)    # explicit list: its order, only its classes
    assert cl2 == ['3', '11'] and len(ds2) == 4
    assert [(ds2[i][1], round(ds2[i][0][0, 4, 4].item() * 255)) for i in range(4)] == [(0, 30), (0, 31), (1, 110), (1, 111)]
    with pytest.raises(FileNotFoundError, match='not in'): image_folder(tmp_path, classes=['3', '12'])
    with pytest.raises(ValueError, match='twice'): image_folder(tmp_path, classes=['3', '3'])
    # generation stores those integer labels (a teacher that reads the class off the pixel value keeps every sample)
    class ByValue(nn.Module):
        def forward(self, x): return F.one_hot((x[:, 0, 0, 0] * 255).round().long() // 10, 12).float() * 10
    man = generate_dad(ByValue(), Id(), ds, tmp_path / 'out', steps=0, chunk_size=10, progress_bar=False)
    sh = DADShards(tmp_path / 'out')
    assert man['n_kept'] == 24 and sh.labels.tolist() == [i // 2 for i in range(24)] and sh.labels.dtype == torch.int64

# ---------------------------------------------------------------- attack presets (issue 15)
class Half(nn.Module):
    "An affine 'discretiser' Q(x) = x/2 + 1/4: exact, so Q(Q(x) + δ) can be written down by hand."
    def forward(self, x): return x / 2 + .25

def _unit(G): return G / np.linalg.norm(G, axis=1, keepdims=True)

def test_presets_registered_and_default():
    assert set(ATTACK_PRESETS) == {'authors', 'paper', 'linf'} and DEFAULT_PRESET == 'paper'
    assert attack_settings('authors') == dict(norm='l2', eps=0.1, lr=0.01, steps=1, start='q', random_start=0.8, criterion='kd', T=4.)
    assert attack_settings('paper') == dict(norm='l2', eps=0.1, lr=0.1, steps=1, start='x', random_start=0., criterion='ce', T=4.)
    with pytest.raises(KeyError, match='valid names'): attack_settings('pgd')
    with pytest.raises(TypeError, match='valid: norm'): attack_settings('linf', step=2)

def test_preset_linf_one_step_hand_computed():
    tnet = lin(W_T); x, y, _, _ = small_batch()
    X, W = np_flat(x), W_T.double().numpy()
    G = (np_softmax(X @ W.T) - np.eye(3)[y.numpy()]) @ W                     # dCE/dx of the teacher
    exp = np.clip(X + 0.1 * np.sign(G), 0, 1)                                 # one L∞ sign step of 0.1 from x
    q8, _ = dad_chunk(tnet, Id(), x, y, 'linf')
    np.testing.assert_allclose(np_flat(q8.float() / 255), exp, rtol=0, atol=.51 / 255)

def test_preset_paper_one_step_hand_computed():
    tnet = lin(W_T); x, y, _, _ = small_batch()
    X, W = np_flat(x), W_T.double().numpy()
    G = (np_softmax(X @ W.T) - np.eye(3)[y.numpy()]) @ W
    exp = .5 * np.clip(X + 0.1 * _unit(G), 0, 1) + .25                       # one L2 step of length 0.1 from x, then Q
    q8, _ = dad_chunk(tnet, Half(), x, y, 'paper')
    np.testing.assert_allclose(np_flat(q8.float() / 255), exp, rtol=0, atol=.51 / 255)

def test_preset_authors_one_step_hand_computed():
    "From Q(x), maximise 16·KL(softmax(φ(x)/4) ‖ softmax(φ(x')/4)) by one L2 step of 0.01 in the 0.1-ball around Q(x)."
    tnet = lin(W_T); x, y, _, _ = small_batch()
    X, W = np_flat(x), W_T.double().numpy()
    Q0 = X / 2 + .25
    def grad(Z):                         # d/dz of T²·KL(p_t ‖ softmax(Wz/T)) per row: T·W^T(q − p_t) (the 1/B never matters)
        return (np_softmax((Z @ W.T) / 4) - np_softmax((X @ W.T) / 4)) @ W
    # no random start: x' = Q(x) + 0.01·g/‖g‖, then Q again
    exp = .5 * (Q0 + 0.01 * _unit(grad(Q0))) + .25
    q8, _ = dad_chunk(tnet, Half(), x, y, 'authors', random_start=0.)
    np.testing.assert_allclose(np_flat(q8.float() / 255), exp, rtol=0, atol=.51 / 255)
    # random start for every image: a point on the 0.1-sphere around Q(x) (Gaussian direction), one step, back onto the ball
    g = make_generator(3); torch.rand(len(x), generator=g); n = np_flat(torch.randn(x.shape, generator=g))
    R = Q0 + 0.1 * _unit(n)
    D = R + 0.01 * _unit(grad(R)) - Q0
    XA = Q0 + D * np.minimum(1, 0.1 / np.linalg.norm(D, axis=1, keepdims=True))
    q8, _ = dad_chunk(tnet, Half(), x, y, 'authors', make_generator(3), random_start=1.)
    np.testing.assert_allclose(np_flat(q8.float() / 255), .5 * XA + .25, rtol=0, atol=.51 / 255)
    # the 80% coin is per image and seeded: the same generator seed gives the same batch
    a, _ = dad_chunk(tnet, Half(), x, y, 'authors', make_generator(5)); b, _ = dad_chunk(tnet, Half(), x, y, 'authors', make_generator(5))
    assert torch.equal(a, b)

def test_generation_records_preset_and_refuses_other_settings(tmp_path):
    x, y = level_data(reps=2)
    man = generate_dad(Level(), Half(), (x, y), tmp_path / 'a', preset='authors', chunk_size=10, max_chunks=1, progress_bar=False)
    cfg = json.loads((tmp_path / 'a' / 'config.json').read_text())
    assert cfg['preset'] == 'authors' and cfg['start'] == 'q' and cfg['criterion'] == 'kd' and cfg['random_start'] == .8
    assert man['config']['preset'] == 'authors' and cfg['seed'] == 0
    for kw in (dict(preset='paper'), dict(preset='linf'), dict(preset='authors', seed=1), dict(preset='authors', lr=.1)):
        with pytest.raises(ValueError, match='other settings'):
            generate_dad(Level(), Half(), (x, y), tmp_path / 'a', chunk_size=10, progress_bar=False, **kw)
    done = generate_dad(Level(), Half(), (x, y), tmp_path / 'a', preset='authors', chunk_size=10, progress_bar=False)
    assert done['complete']
    ref = generate_dad(Level(), Half(), (x, y), tmp_path / 'b', preset='authors', chunk_size=10, progress_bar=False)
    for c in range(3):                    # seeded random starts: a resumed run equals an uninterrupted one, bit for bit
        a, b = (load_file(str(tmp_path / d / f'shard_{c:06d}.safetensors')) for d in ('a', 'b'))
        assert all(torch.equal(a[k], b[k]) for k in a)

def test_legacy_folder_resumes_as_linf(tmp_path):
    x, y = level_data(reps=2)
    generate_dad(Level(), Id(), (x, y), tmp_path, preset='linf', chunk_size=10, max_chunks=1, progress_bar=False)
    p = tmp_path / 'config.json'; cfg = json.loads(p.read_text())
    for k in ('preset', 'start', 'random_start', 'criterion', 'T', 'seed'): cfg.pop(k)      # as written before presets existed
    p.write_text(json.dumps(cfg))
    assert generate_dad(Level(), Id(), (x, y), tmp_path, preset='linf', chunk_size=10, progress_bar=False)['complete']
    with pytest.raises(ValueError, match='other settings'):
        generate_dad(Level(), Id(), (x, y), tmp_path, preset='paper', chunk_size=10, progress_bar=False)

def test_filtered_items_are_not_forwarded():
    "BatchNorm sees the B training images and the kept DAD samples once each, never the placeholders of dropped ones."
    teacher = as_teacher(lin(W_T)); x, y, xd, has = small_batch(); batch = (x, y, xd, has)
    for name in ('ard', 'rslad', 'dad', 'vqgan_sample', 'dad_aug', 'dat+dad'):
        m = Spy(lin(W_S))
        method_loss(name, teacher, Q4())(m, batch)
        want = len(x) + int(has.sum()) + (len(x) if name == 'dat+dad' else 0)   # DAT+DAD also forwards x_adv (one per image)
        assert m.sizes[-1] == want, (name, m.sizes)
    none = (x, y, xd, torch.zeros(4, dtype=torch.bool))                        # a batch without any kept sample
    assert torch.isfinite(method_loss('dad', teacher)(lin(W_S), none))

def test_truncated_shard_is_named(tmp_path):
    "A shard cut short (a copy interrupted): safetensors alone says 'incomplete metadata' without the file."
    x, y = bright_data()
    generate_dad(Bright(), Id(), (x, y), tmp_path, chunk_size=5, progress_bar=False)
    shard = sorted(tmp_path.glob('shard_*.safetensors'))[1]
    shard.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(RuntimeError, match=rf"{shard.name}.*delete it and resume with the same settings to regenerate chunk 1"):
        DADShards(tmp_path)

# ---------------------------------------------------------------- AdvProp and Pyramid AT (DAD Tables 1, 2, 7)
from robust_nb.dad import AuxBN, add_aux_bn, remove_aux_bn, aux_bn, frozen_bn_stats, pyramid_perturb, pyramid_attack, PYRAMID_AT, distil

def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

def test_advprop_aux_bn_stats_only_from_adversarial_batches():
    m = add_aux_bn(_bn_net()); m.train()
    x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 3, (8,))
    seen = {'main': [], 'aux': []}
    for k in seen: getattr(m[1], k).register_forward_pre_hook(lambda mod, a, k=k: seen[k].append(a[0].detach().clone()))
    loss = method_loss('advprop', eps=8/255, steps=5, lr=2/255)(m, (x, y))
    loss.backward()
    assert (len(seen['main']), len(seen['aux'])) == (1, 6)               # main: the clean batch; aux: 5 PGD forwards + the adversarial batch
    assert torch.equal(seen['main'][0], m[0](x).detach())                 # the main BatchNorm saw the clean images
    assert int(m[1].main.num_batches_tracked) == 1 and int(m[1].aux.num_batches_tracked) == 1
    torch.testing.assert_close(m[1].main.running_mean, .1 * seen['main'][0].mean((0, 2, 3)))
    torch.testing.assert_close(m[1].aux.running_mean, .1 * seen['aux'][-1].mean((0, 2, 3)))
    torch.testing.assert_close(m[1].aux.running_var, .9 + .1 * seen['aux'][-1].var((0, 2, 3)))   # unbiased batch variance, from 1
    assert m[1].aux.weight.grad is not None and m[1].main.weight.grad is not None   # both pairs of affine parameters train

def test_advprop_and_pyramid_eps0_reduce_to_ce():
    ref = _bn_net().train(); x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 3, (8,))
    ce2 = 2 * F.cross_entropy(ref(x), y)
    torch.testing.assert_close(method_loss('advprop', eps=0.)(add_aux_bn(copy.deepcopy(ref)), (x, y)), ce2)
    torch.testing.assert_close(method_loss('pyramid_at', eps=0.)(ref, (x, y)), ce2)

def test_advprop_refuses_unsplit_bn_and_restores_architecture():
    m = _bn_net(); x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 3, (8,))
    with pytest.raises(ValueError, match='add_aux_bn'): method_loss('advprop')(m, (x, y))
    keys, bn = list(m.state_dict()), m[1]
    out = distil(m, 'advprop', (x, y), epochs=1, batch_size=4, progress=False, hp=dict(steps=1))
    assert out is m and m[1] is bn and list(m.state_dict()) == keys and not any(isinstance(k, AuxBN) for k in m.modules())
    assert not torch.equal(bn.running_mean, torch.zeros(4))               # the main BatchNorm trained
    m.eval(); add_aux_bn(m)
    with aux_bn(m), torch.no_grad(): assert torch.equal(m(x), remove_aux_bn(m)(x))   # eval: the main BatchNorm whatever the switch

def test_advprop_end_to_end_learns_easy_toy_with_main_bn():
    "Regression for the seeded table's AdvProp-at-chance row: the machinery (split, clean CE through main BN, teardown) trains."
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(40); x = .2 * torch.rand(120, 3, 8, 8, generator=g)
    x[torch.arange(120), y] += .6                                        # class k: channel k bright (separable by a wide margin)
    m = _bn_net(); bn = m[1]; before = bn.running_mean.clone()
    distil(m, 'advprop', (x, y), epochs=15, batch_size=24, lr=2e-2, progress=False, hp=dict(eps=2/255, steps=2, lr=1/255))
    assert m[1] is bn and not torch.equal(bn.running_mean, before)       # the trained main BatchNorm is the test-time one
    with torch.no_grad(): acc = (m.eval()(x).argmax(1) == y).float().mean().item()
    assert acc > .9, acc                                                 # chance is 1/3

def test_pyramid_perturb_hand_computed_and_bounds():
    x = torch.full((1, 1, 4, 4), .5)
    d0, d1 = torch.tensor([[[[.01, -.02], [0., .03]]]]), torch.zeros(1, 1, 4, 4); d1[0, 0, 0, 0] = .3
    expect = torch.tensor([[.9, .6, .3, .3], [.6, .6, .3, .3], [.5, .5, .8, .8], [.5, .5, .8, .8]])
    torch.testing.assert_close(pyramid_perturb(x, [d0, d1], (10., 1.))[0, 0], expect)
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    img = torch.rand(5, 3, 32, 32)
    for eps, lr in ((.01, .004), (.01, .05)):                            # lr < eps and lr > eps (clipped at every step)
        xa, ds = pyramid_attack(cnn, img, 3, eps=eps, lr=lr, steps=4, generator=make_generator(1))
        assert [tuple(d.shape[-2:]) for d in ds] == [(7, 7), (14, 14), (32, 32)]
        for d in ds: assert d.abs().max() <= eps + 1e-7
        # each level moves a pixel by at most m_s·ε: rebuild level by level and check every increment
        cur = img
        for d, s in zip(ds, PYRAMID_AT['scalars']):
            nxt = pyramid_perturb(cur, [d], (s,)); assert (nxt - cur).abs().max() <= s * eps + 1e-6; cur = nxt
        torch.testing.assert_close(cur, xa)
    _, ds1 = pyramid_attack(cnn, img, 3, eps=.01, lr=.004, steps=1, generator=make_generator(1))
    for d in ds1: assert ((d == 0) | ((d.abs() - .004).abs() < 1e-7)).all()
    with pytest.raises(ValueError, match='one multiplier per pyramid level'): pyramid_attack(cnn, img, 3, grids=(7, 0), scalars=(1.,))
