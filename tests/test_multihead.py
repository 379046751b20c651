import os, re
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from robust_nb.models import branch_split, embedded_student, timm_classifier, split_model, branch_stages
from robust_nb.losses import multihead_loss, kd_loss, VARIANTS
from robust_nb.multihead import (MultiHead, mc_logits, select_head, head_scores, f_correct,
                                 tuning_set, TuningSet, distill, cache_features, Selected, head_report)

FLIP = lambda x, generator=None: x.flip(-1)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    st = timm_classifier("test_vit", 4, img_size=32, patch_size=8)
    te = timm_classifier("test_resnet", 4)
    x = torch.rand(20, 3, 32, 32); y = torch.arange(20) % 4
    return st, te, tuning_set(x, y, a=1., augment=FLIP)


def test_kd_loss_is_hinton():
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    T = 3.
    ref = T * T * (F.softmax(t / T, -1) * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).sum(-1)
    torch.testing.assert_close(kd_loss(s, t, T), ref.mean())     # losses.kd_loss: mean over the batch
    assert kd_loss(t, t).abs().max() < 1e-6


def test_loss_variants_hand_computed():
    torch.manual_seed(1)
    lg, y = torch.randn(3, 4, 6), torch.tensor([0, 5, 2, 3])
    aug = torch.tensor([True, False, False, True]); tc, ta = torch.randn(4, 6), torch.randn(4, 6)
    ce = lambda l: F.cross_entropy(l, y, reduction="none")
    t_mix = torch.where(aug[:, None], ta, tc)
    own = torch.where(aug[:, None], lg[1], lg[0])
    exp = {"ours": ce(own) + kd_loss(own, t_mix) + ce(lg[2]) + kd_loss(lg[2], t_mix),
           "wo_kd": ce(own) + ce(lg[2]),
           "single_teacher": ce(own) + kd_loss(own, ta) + ce(lg[2]) + kd_loss(lg[2], ta),
           "combined_only": ce(lg[2]) + kd_loss(lg[2], t_mix),
           "only_kd": ce(lg[2]) + kd_loss(lg[2], ta)}
    assert set(exp) == set(VARIANTS)
    for v, e in exp.items(): torch.testing.assert_close(multihead_loss(lg, y, aug, tc, ta, variant=v), e.mean())
    # eq. 5: the clean head never receives gradient from augmented samples, nor the unclean head from clean ones
    lg = lg.clone().requires_grad_()
    multihead_loss(lg, y, aug, tc, ta).backward()
    assert lg.grad[0][aug].abs().sum() == 0 and lg.grad[1][~aug].abs().sum() == 0
    assert lg.grad[0][~aug].abs().sum() > 0 and lg.grad[1][aug].abs().sum() > 0


def _mc(clean, unclean, combined):
    return torch.stack([torch.as_tensor(v, dtype=torch.float) for v in (clean, unclean, combined)])


def test_select_head_eq6_and_ablations():
    # one image, N=4, 3 classes. clean head: confident but disagrees with combined; unclean: agrees, noisier
    c = [[[6., 0, 0]]] * 4
    u = [[[0., 3, 0]], [[0., 2, 0]], [[0., 3, 0]], [[0., 2, 0]]]
    m = [[[0., 3, 0]]] * 4
    mc = _mc(c, u, m)
    pm, um, kl = head_scores(mc)
    assert um[0, 0] == 0 and um[1, 0] > 0 and kl[2, 0].abs() < 1e-6
    p = mc.softmax(-1); pmean = p.mean(1)
    torch.testing.assert_close(um, p.std(1).mean(-1))
    torch.testing.assert_close(kl[0], (pmean[2] * (pmean[2].log() - pmean[0].log())).sum(-1))
    assert select_head(mc, "ours")[0].item() == 0            # U_mc = 0 for the clean head wins eq. 6 outright
    assert select_head(mc, "wo_kld")[0].item() == 0
    assert select_head(mc, "wo_umc")[0].item() == 1          # KL alone prefers the head that agrees with combined
    assert select_head(mc, "max_logit")[0].item() == 0
    assert select_head(mc, "unclean")[0].item() == 1
    # now the clean head is noisy too: the product picks the unclean head
    c2 = [[[6., 0, 0]], [[1., 0, 0]], [[6., 0, 0]], [[1., 0, 0]]]
    assert select_head(_mc(c2, u, m), "ours")[0].item() == 1
    _, lp = select_head(mc)
    torch.testing.assert_close(lp.exp(), pmean[0])
    with pytest.raises(ValueError, match="valid"): select_head(mc, "entropy")


def test_f_correct():
    assert f_correct([0, 0, 1, 1], [0, 1, 1, 1]) == 0.75
    with pytest.raises(ValueError, match="entries"): f_correct([0, 1], [0])
    with pytest.raises(ValueError, match="empty"): f_correct([], [])


def test_multihead_structure(small):
    st, _, _ = small
    sp = split_model(st, blocks=1)                   # M_s: last attention branch; heads: last MLP branch + norm + fc
    mh = MultiHead(sp, p=0.25)
    act = lambda m: {d.p for d in m.modules() if isinstance(d, nn.Dropout) and d.p > 0}
    assert act(mh.shared) == {0.25} and all(act(h) == {0.25} for h in mh.heads)
    assert act(mh.backbone) == set() and act(st) == set()              # M_b and the student passed in: no dropout
    assert not any(p.requires_grad for p in mh.backbone.parameters())
    assert all(p.requires_grad for p in st.parameters())              # the student passed in is not modified
    assert (mh.head_blocks, mh.frac_tuned, mh.head_frac) == (1, sp.frac_tuned, sp.head_frac)
    mh.train(); assert not mh.backbone.training and mh.shared.training
    x = torch.rand(2, 3, 32, 32)
    mh.eval(); st.eval()
    with torch.no_grad():
        for h in range(3): torch.testing.assert_close(mh(x)[h], st(x))
        torch.testing.assert_close(mh(x), mh(x), rtol=0, atol=0)    # eval mode: deterministic


def _families():
    from robust_nb.models import clip_classifier, register_tiny_clip
    torch.manual_seed(0)
    return {"resnet": embedded_student(4), "vit": timm_classifier("test_vit", 4, img_size=32, patch_size=8),
            "clip": clip_classifier(register_tiny_clip(), head="linear", num_classes=4),
            "clip_res": clip_classifier(register_tiny_clip(), head="zeroshot", class_names=list("abcd"), residual_stages=True),
            "resnet_br": branch_stages(embedded_student(4))}


@pytest.mark.parametrize("fam", ["resnet", "vit", "clip", "clip_res", "resnet_br"])
def test_dropout_in_shared_and_every_head(fam):
    st = _families()[fam]
    sp = split_model(st, blocks=2)
    mh = MultiHead(sp)
    assert sp.head_blocks >= 1 and sp.shared_blocks >= 1
    ns = len(sp.shared)
    from robust_nb.models import has_dropout, BLOCK_KINDS, expects_dropout
    for s, k in zip(mh.shared, sp.kinds[:ns]):
        if expects_dropout(s, k): assert has_dropout(s), (fam, type(s).__name__)
    for h in mh.heads:
        for s, k in zip(h, sp.kinds[ns:]):
            if k in BLOCK_KINDS + ("head",): assert has_dropout(s), (fam, type(s).__name__)
    x = torch.rand(3, 3, 32, 32)
    mh.eval()
    mc = mc_logits(mh, x, n=6, seed=0)
    assert mc.shape == (3, 6, 3, 4)
    assert (mc.std(1) > 0).all()                                       # each head's own dropout moves every logit row
    assert not torch.equal(mc[0], mc[1]) and not torch.equal(mc[1], mc[2])   # identical heads, independent masks
    with torch.no_grad(): torch.testing.assert_close(mh(x), mh(x), rtol=0, atol=0)
    mt = mc_logits(mh, x, n=6, seed=0, scope="tuned")
    assert mt.shape == mc.shape and not torch.equal(mt, mc)
    with pytest.raises(ValueError, match="scope must be"): mc_logits(mh, x, scope="all")


def test_multihead_refuses_blocks_without_dropout_and_warns_linear_heads():
    from robust_nb.models import StagedModel, Prep, LinearHead
    m = StagedModel(Prep((0.5,) * 3, (0.25,) * 3), [nn.Flatten(), nn.Linear(12, 8), nn.Linear(8, 8), LinearHead(8, 3)],
                    ["stem", "block", "block", "head"])
    with pytest.raises(TypeError, match="carry no dropout after models.add_dropout: Linear"): MultiHead(split_model(m, blocks=2))
    MultiHead(split_model(m, blocks=2), p=0.)                         # without dropout nothing is checked
    with pytest.warns(UserWarning, match="tune ≥ 2 units"): MultiHead(split_model(embedded_student(3), blocks=1))
    import warnings
    with warnings.catch_warnings():                                   # cut at its branches, one block gives real heads
        warnings.simplefilter("error")
        assert MultiHead(split_model(branch_split(embedded_student(3)), blocks=1)).head_blocks == 1


def test_state_dict_round_trip(small, tmp_path):
    st, _, _ = small
    mh = MultiHead(split_model(st, blocks=2))
    with torch.no_grad():
        for p in mh.parameters(): p.add_(0.01 * torch.randn_like(p)) if p.requires_grad else None
    torch.save(mh.state_dict(), tmp_path / "mh.pt")
    mh2 = MultiHead(split_model(st, blocks=2))
    mh2.load_state_dict(torch.load(tmp_path / "mh.pt", weights_only=True))
    x = torch.rand(2, 3, 32, 32)
    mh.eval(); mh2.eval()
    with torch.no_grad(): torch.testing.assert_close(mh2(x), mh(x), rtol=0, atol=0)
    torch.testing.assert_close(mc_logits(mh2, x, n=4, seed=3), mc_logits(mh, x, n=4, seed=3), rtol=0, atol=0)
    assert [type(m) for m in mh2.modules()] == [type(m) for m in mh.modules()]   # the dropout structure is rebuilt the same


def test_mc_reruns_only_dropout_layers(small):
    st, _, _ = small
    mh = MultiHead(split_model(st, blocks=1)).eval()                  # heads: MLP branch (dropout at its end) + norm + fc
    calls = {}
    def hook(name):
        def f(mod, inp, out): calls.setdefault(name, []).append(tuple(inp[0].shape[:2]))
        return f
    mh.backbone.register_forward_hook(hook("backbone"))
    mh.shared.register_forward_hook(hook("shared"))
    for i, h in enumerate(mh.heads):
        h[-1].fc.register_forward_hook(hook(f"fc{i}")); h[0].fn.register_forward_hook(hook(f"mlp{i}"))
    x = torch.rand(3, 3, 32, 32)
    out = mc_logits(mh, x, n=10, seed=0)
    assert out.shape == (3, 10, 3, 4)
    assert calls["backbone"][0][0] == 3 and calls["shared"][0][0] == 3 and len(calls["shared"]) == 1
    # the MLP before the dropout runs once, on the class token only (token pooling, per-token head); the rest: one N×B batch
    assert all(calls[f"mlp{i}"] == [(3, 1)] for i in range(3))
    assert all(calls[f"fc{i}"][0][0] == 30 for i in range(3))
    torch.testing.assert_close(out, mc_logits(mh, x, n=10, seed=0))
    assert not torch.equal(out, mc_logits(mh, x, n=10, seed=1))
    assert not mh.training and not any(m.training for m in mh.modules())   # dropout switched back off
    with pytest.raises(ValueError, match="n ≥ 2"): mc_logits(mh, x, n=1)


@pytest.mark.parametrize("fam", ["resnet", "vit", "clip", "clip_res", "resnet_br"])
def test_mc_shortcuts_compute_the_head(fam):
    # with dropout held off, the MC path (block cut at its dropout, class-token pruning) gives each head's own output
    from robust_nb.multihead import _head_mc
    st = _families()[fam]
    mh = MultiHead(split_model(st, blocks=2)).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        z = mh.shared(mh.features(x))
        for h in mh.heads:
            torch.testing.assert_close(_head_mc(h, z, 4, stochastic=False), h(z)[None].expand(4, -1, -1), atol=1e-5, rtol=1e-4)


def test_tuning_set_fixed_fraction():
    x, y = torch.rand(10, 3, 8, 8), torch.arange(10)
    a = tuning_set(x, y, a=0.5, augment=FLIP, seed=3); b = tuning_set(x, y, a=0.5, augment=FLIP, seed=3)
    assert len(a) == 10 and torch.equal(a.x, b.x) and torch.equal(a.is_aug, b.is_aug)
    full = tuning_set(x, y, a=1., augment=FLIP)
    assert len(full) == 20 and full.is_aug.sum() == 10
    assert torch.equal(full.x[full.is_aug], x.flip(-1)) and torch.equal(full.x[~full.is_aug], x)
    with pytest.raises(ValueError, match="a \\(fraction"): tuning_set(x, y, a=0)


def test_cached_equals_uncached(small, tmp_path):
    st, te, ts = small
    kw = dict(blocks=1, epochs=2, batch_size=8, seed=5)
    r_mem = distill(st, te, ts, cache=True, **kw)
    r_raw = distill(st, te, ts, cache=False, **kw)
    r_disk = distill(st, te, ts, cache=True, cache_budget=0, cache_path=tmp_path / "f32", cache_dtype=torch.float32, **kw)
    assert (tmp_path / "f32" / "shard_000000.safetensors").exists()
    for r in (r_raw, r_disk):
        for a, b in zip(r_mem.model.parameters(), r.model.parameters()): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    r_half = distill(st, te, ts, cache=True, cache_budget=0, cache_path=tmp_path / "f16", **kw)     # default: fp16 shards
    for a, b in zip(r_mem.model.parameters(), r_half.model.parameters()): torch.testing.assert_close(a, b, atol=1e-2, rtol=0)
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(r_mem.model.eval()(x), r_raw.model.eval()(x), atol=1e-5, rtol=1e-4)
    # and training actually changed the tuned part
    assert any(not torch.equal(a, b) for a, b in zip(r_mem.model.shared.parameters(), split_model(st, blocks=1).shared.parameters()))
    assert r_mem.cached and not r_raw.cached and r_mem.ms_per_img > 0


def test_cache_features_spill(small, tmp_path):
    st, te, ts = small
    mh = MultiHead(split_model(st, blocks=1))
    a, = cache_features(mh, ts.x, batch_size=7)
    b = cache_features(mh, ts.x, batch_size=7, budget=0, path=tmp_path / "s", dtype=torch.float32)
    torch.testing.assert_close(a, b.tensors()[0], atol=0, rtol=0)
    h = cache_features(mh, ts.x, batch_size=7, budget=0, path=tmp_path / "h")                  # fp16 on disk, fp32 when read
    torch.testing.assert_close(a, h.tensors()[0], atol=2e-3, rtol=1e-3)
    assert h[0][0].dtype == torch.float32
    size = lambda d: sum(f.stat().st_size for f in d.glob("shard_*"))
    assert a.numel() * 2 <= size(tmp_path / "h") < a.numel() * 2 + 4096 <= size(tmp_path / "s")


def test_distill_errors(small):
    st, te, ts = small
    with pytest.raises(ValueError, match="teacher predicts 3 classes but the student 4"):
        distill(st, timm_classifier("test_resnet", 3), ts, blocks=1)
    with pytest.raises(ValueError, match=r"frac must be in \(0, 1\)"): distill(st, te, ts, frac=1.2)
    with pytest.raises(ValueError, match="valid: ours"): distill(st, te, ts, blocks=1, variant="kd")


def test_selected_wrapper_and_report(small):
    st, te, ts = small
    r = distill(st, te, ts, blocks=1, epochs=1, batch_size=10)
    x = torch.rand(5, 3, 32, 32)
    sel = Selected(r.model)
    lp = sel(x)
    assert lp.shape == (5, 4) and torch.allclose(lp.exp().sum(-1), torch.ones(5))
    assert set(sel.last_selected.tolist()) <= {0, 1}
    rep = head_report(r.model, x, torch.zeros(5, dtype=torch.long), shifted=True)
    assert rep["mc_probs"].shape == (3, 10, 5, 4) and rep["u_mc"].shape == (5, 3) and rep["shifted"].all()


def test_zero_shot_clip_mode(small):
    from robust_nb.models import clip_classifier, register_tiny_clip
    _, te, ts = small
    zs = clip_classifier(register_tiny_clip(), head="zeroshot", class_names=["a", "b", "c", "d"])
    r = distill(zs, te, ts, blocks=2, epochs=1, batch_size=10)      # tiny tower: M_s = block 0, heads = block 1 + ln_post/proj + ZS head
    x = torch.rand(2, 3, 32, 32)
    out = r.model.eval()(x)
    assert out.shape == (3, 2, 4)
    w = zs.stages[-1].fc.weight
    assert all(torch.equal(h[-1].fc.weight, w) for h in r.model.heads)            # fixed text embeddings
    assert not torch.equal(r.model.shared[0].fn.qkv.weight if hasattr(r.model.shared[0], "fn") else next(r.model.shared.parameters()),
                           next(split_model(zs, blocks=2).shared.parameters()))     # the tower slice was tuned

def test_distill_refuses_bad_labels_before_any_work():
    "Labels are checked where D^a is built and against the student's classes (was: a bare cross-entropy IndexError/dtype error)."
    from robust_nb.multihead import distill
    from robust_nb.models import timm_classifier
    torch.manual_seed(0)
    st, te, x = timm_classifier('test_resnet', 10), timm_classifier('test_resnet', 10), torch.rand(8, 3, 32, 32)
    for y, msg in [(torch.rand(8), 'must hold integer class indices'), (torch.arange(8) - 1, 'class indices >= 0, got -1'),
                   (torch.arange(8) + 3, 'class index 10 but there are 10 classes'), (torch.arange(6), '6 labels but there are 8 images')]:
        with pytest.raises((TypeError, ValueError), match=re.escape(msg)): distill(st, te, (x, y), blocks=2, epochs=1, progress=False)
