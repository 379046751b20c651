import os, copy
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import pytest, torch, torch.nn.functional as F, timm, open_clip
from robust_nb.models import (timm_classifier, clip_classifier, embedded_student, split_model, register_tiny_clip,
                              StagedModel, OPENAI_TEMPLATES, feasible_fracs, add_dropout, has_dropout, BLOCK_KINDS,
                              DropAfter, Prep, LinearHead, branch_stages, BranchIn, BranchOut,
                              expects_dropout)


def _n(m): return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["test_vit", "test_resnet", "test_convnext"])
def test_timm_wrapper_matches_timm(name, tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model(name, num_classes=1000).eval()
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    m = timm_classifier(name, 1000, pretrained=tmp_path / "w.pth").eval()     # same class count: the head loads too
    size = 160 if name == "test_vit" else 40
    x = torch.rand(2, 3, size, size)
    cfg = ref.pretrained_cfg
    xn = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad(): torch.testing.assert_close(m(x), ref(xn), atol=1e-5, rtol=1e-4)
    assert _n(m) == _n(ref)                           # the stages own exactly timm's parameters, nothing duplicated
    assert len(m.state_dict()) == len(ref.state_dict())


def test_timm_vocabulary_and_reset():
    m = timm_classifier("test_vit", 5).eval()
    x = torch.rand(3, 3, 32, 32)                      # resized to the ViT's native 160 px inside
    f = m.forward_features(x)
    assert f.ndim == 3
    assert m.forward_head(f, pre_logits=True).shape == (3, f.shape[-1])
    m.reset_classifier(3)
    assert m(x).shape == (3, 3) and m.num_classes == 3


def test_random_init_differs_from_file(tmp_path):
    torch.manual_seed(0); a = timm_classifier("test_resnet", 4)
    torch.save(timm.create_model("test_resnet", num_classes=4).state_dict(), tmp_path / "w.pth")
    b = timm_classifier("test_resnet", 4, pretrained=str(tmp_path / "w.pth"))
    sd = torch.load(tmp_path / "w.pth")
    w = next(iter(sd.values()))                      # the stem's first conv weight
    assert torch.equal(next(b.parameters()), w)
    assert not torch.equal(next(a.parameters()), w)


def test_embedded_student_size():
    s, v = embedded_student(10), embedded_student(10, arch="vit")
    assert 3.5e6 < _n(s) < 4e6 and s.n_blocks == 8 and s.name == "resnet10t"
    assert 2e6 < _n(v) < 3e6 and v.n_blocks == 6
    for m in (s, v): assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="valid: resnet, vit"): embedded_student(10, arch="vgg")


def test_embedded_resnet_split():
    s = embedded_student(10).eval()
    sp = split_model(s, frac=0.1)                   # the closest boundary: last block + classifier (17%)
    assert s.kinds[sp.cut:] == ["block", "head"] and 0.15 < sp.frac_tuned < 0.2
    assert sp.head_blocks == 0 and sp.shared_blocks == 1            # one tuned block: the head can only be pool + fc
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad(): torch.testing.assert_close(sp.head(sp.shared(sp.backbone(x))), s(x))


def test_clip_zero_shot_equals_cosine_logits(tmp_path):
    name = register_tiny_clip()
    torch.manual_seed(1)
    clip = open_clip.create_model(name).eval()
    torch.save(clip.state_dict(), tmp_path / "c.pt")
    classes, templates = ["dog", "cat"], ("a photo of a {}.", "a drawing of a {}.")
    m = clip_classifier(name, pretrained=tmp_path / "c.pt", head="zeroshot", class_names=classes, templates=templates).eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1); std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    tok = open_clip.get_tokenizer(name)
    with torch.no_grad():
        img = F.normalize(clip.encode_image((x - mean) / std), dim=-1)
        txt = torch.stack([F.normalize(F.normalize(clip.encode_text(tok([t.format(c) for t in templates])), dim=-1).mean(0), dim=-1) for c in classes])
        torch.testing.assert_close(m(x), clip.logit_scale.exp() * img @ txt.T, atol=1e-4, rtol=1e-4)
    # a linear head initialised from the zero-shot weights gives the same logits up to the |f| scaling
    lin = clip_classifier(name, pretrained=tmp_path / "c.pt", head="linear", class_names=classes, templates=templates).eval()
    with torch.no_grad():
        torch.testing.assert_close(lin(x).argmax(-1), m(x).argmax(-1))


def test_clip_errors():
    name = register_tiny_clip()
    with pytest.raises(ValueError, match="class_names"): clip_classifier(name, head="zeroshot")
    with pytest.raises(ValueError, match="placeholder"): clip_classifier(name, head="zeroshot", class_names=["a"], templates=["no slot"])
    with pytest.raises(FileNotFoundError, match="do not exist"): clip_classifier(name, pretrained="/nope.pt")
    with pytest.raises(ValueError, match="num_classes"): clip_classifier(name, head="linear")


def test_split_by_blocks_and_frac():
    s = embedded_student(10, arch="vit").eval()
    for b in range(1, 7):
        sp = split_model(s, blocks=b)
        assert s.kinds[sp.cut] == "block" and s.kinds[sp.cut:].count("block") == b and sp.n_total == _n(s)
        assert sp.n_tuned == sum(p.numel() for st in s.stages[sp.cut:] for p in st.parameters())
        assert len(sp.shared) >= 1 and len(sp.head) >= 1
    x = torch.rand(3, 3, 32, 32)
    sp = split_model(s, blocks=3)
    with torch.no_grad(): torch.testing.assert_close(sp.head(sp.shared(sp.backbone(x))), s(x))
    # frac picks the stage boundary closest to the requested fraction
    fr = [split_model(s, frac=f).frac_tuned for f in (0.1, 0.3, 0.5, 0.9)]
    assert fr == sorted(fr) and abs(fr[1] - 0.3) < 0.1
    # views share parameters with the model
    assert sp.shared[0] is s.stages[sp.cut]


@pytest.mark.parametrize("bad", [0, 1, -0.5, 2.0])
def test_split_frac_outside_open_interval(bad):
    with pytest.raises(ValueError, match=r"frac must be in \(0, 1\)"): split_model(embedded_student(3), frac=bad)


def test_split_errors():
    s = embedded_student(3, arch="vit")
    with pytest.raises(ValueError, match="nearest feasible tuned fractions are 0.1096"): split_model(s, frac=1e-4)
    with pytest.raises(ValueError, match="between 1 and 6"): split_model(s, blocks=0)
    with pytest.raises(ValueError, match="exactly one"): split_model(s, frac=.1, blocks=1)
    with pytest.raises(TypeError, match="StagedModel"): split_model(timm.create_model("test_vit"), blocks=1)


def test_residual_stages_match_whole_blocks():
    torch.manual_seed(0); a = embedded_student(4, arch="vit").eval()
    b = embedded_student(4, arch="vit", residual_stages=False).eval()
    b.load_state_dict({k2: v for (k1, v), k2 in zip(a.state_dict().items(), b.state_dict())})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(): torch.testing.assert_close(a(x), b(x))
    assert a.kinds.count("mlp") == 6 and b.kinds.count("mlp") == 0 and a.n_blocks == b.n_blocks == 6
    assert split_model(a, frac=0.1).frac_tuned < split_model(b, frac=0.1).frac_tuned   # finer cut points


def test_split_cnn_and_clip():
    r = timm_classifier("test_resnet", 5)
    sp = split_model(r, blocks=1)
    assert r.kinds[sp.cut] == "block" and sp.head[-1] is r.stages[-1]
    c = clip_classifier(register_tiny_clip(), head="linear", num_classes=3)
    sp = split_model(c, blocks=1)
    assert c.kinds[sp.cut:] == ["block", "norm", "head"]


@pytest.fixture(scope="module")
def families():
    return {"resnet": timm_classifier("test_resnet", 5), "convnext": timm_classifier("test_convnext", 5),
            "vit": timm_classifier("test_vit", 5, img_size=32, patch_size=8),
            "vit_blocks": timm_classifier("test_vit", 5, img_size=32, patch_size=8, residual_stages=False),
            "clip": clip_classifier(register_tiny_clip(), head="linear", num_classes=5),
            "clip_res": clip_classifier(register_tiny_clip(), head="linear", num_classes=5, residual_stages=True),
            "embedded": embedded_student(5), "embedded_br": branch_stages(embedded_student(5))}


def test_block_granularity_per_family(families):
    # every residual block inside every stage is its own stage (not whole stages); ViT: one stage per residual branch
    ref = {"resnet": sum(len(l) for l in (timm.create_model("test_resnet").layer1, timm.create_model("test_resnet").layer2,
                                           timm.create_model("test_resnet").layer3, timm.create_model("test_resnet").layer4)),
           "convnext": sum(len(st.blocks) for st in timm.create_model("test_convnext").stages),
           "vit": len(timm.create_model("test_vit").blocks), "vit_blocks": len(timm.create_model("test_vit").blocks),
           "clip": open_clip.create_model(register_tiny_clip()).visual.transformer.layers,
           "clip_res": open_clip.create_model(register_tiny_clip()).visual.transformer.layers,
           "embedded": 1 + 1 + 2 + 4, "embedded_br": 1 + 1 + 2 + 4}
    for k, m in families.items():
        assert m.n_blocks == ref[k], k
        assert m.kinds.count("mlp") == (ref[k] if k in ("vit", "clip_res") else 0), k
        for c in feasible_fracs(m): assert any(kk in BLOCK_KINDS for kk in m.kinds[c:]) and c >= 1


def test_realised_fractions_and_head_rule(families):
    for k, m in families.items():
        total = _n(m)
        for b in range(1, m.n_blocks + 1):
            sp = split_model(m, blocks=b)
            sizes = [_n(s) for s in m.stages]
            assert sp.n_tuned == sum(sizes[sp.cut:]) and sp.n_head == sum(sizes[sp.head_cut:]) and sp.n_total == total
            assert sp.frac_tuned == sp.n_tuned / total and sp.head_frac == sp.n_head / sp.n_tuned
            units = [kk in BLOCK_KINDS for kk in m.kinds]
            n_units = sum(units[sp.cut:])
            assert sp.shared_blocks + sp.head_blocks == n_units and sp.shared_blocks >= 1
            assert sp.head_blocks == min(1, n_units - 1) or sp.head_blocks > 1
            # brute force: among cuts with ≥1 block in M_s and ≥ min(1, n_units-1) in the head, closest to 1/5 of the tuned part
            ok = [h for h in range(sp.cut + 1, len(sizes)) if sum(units[sp.cut:h]) >= 1 and sum(units[h:]) >= min(1, n_units - 1)]
            best = min(abs(sum(sizes[h:]) - 0.2 * sp.n_tuned) for h in ok)
            assert abs(sp.n_head - 0.2 * sp.n_tuned) == best, (k, b)
    # a head of one or more blocks, then norm/pool, then the classifier
    sp = split_model(families["clip"], blocks=2)
    assert families["clip"].kinds[sp.head_cut:] == ["block", "norm", "head"] and sp.kinds == ("block", "block", "norm", "head")
    sp = split_model(families["embedded"], blocks=5)
    assert sp.head_blocks == 1 and 0.15 < sp.head_frac < 0.3
    # head_blocks=0: the old classifier-only heads, when asked for
    assert split_model(families["embedded"], blocks=5, head_blocks=0).kinds[-1:] == ("head",)


def test_infeasible_fraction_names_nearest(families):
    e = families["embedded"]
    fe = sorted(feasible_fracs(e).values())
    assert split_model(e, frac=fe[1]).frac_tuned == fe[1]
    with pytest.raises(ValueError, match=rf"nearest feasible tuned fractions are {fe[0]:.4f} \(more"):
        split_model(e, frac=0.05)
    mid = (fe[0] + fe[1]) / 2
    with pytest.raises(ValueError, match=rf"are {fe[0]:.4f} and {fe[1]:.4f}"): split_model(e, frac=mid, tol=1.1)
    with pytest.raises(ValueError, match="head_frac must be in"): split_model(e, blocks=2, head_frac=0)


def test_add_dropout_every_family(families):
    x = torch.rand(2, 3, 32, 32)
    for k, m0 in families.items():
        m = copy.deepcopy(m0).eval()
        keys = set(m.state_dict())
        with torch.no_grad(): y0 = m(x)
        sites = add_dropout(m, 0.25)
        assert set(m.state_dict()) == keys, k                    # Identity/None slots: no new keys
        assert all(has_dropout(s) for s, kk in zip(m.stages, m.kinds) if expects_dropout(s, kk)), k
        assert not has_dropout(m.stages[0]) and len(sites) == len(set(sites))
        with torch.no_grad():
            torch.testing.assert_close(m(x), y0)                 # eval: dropout off
            m.train(); assert not torch.equal(m(x), m(x)), k     # train: stochastic
        assert add_dropout(m, 0.1) == sites                      # idempotent: rates change, nothing nests
        assert {d.p for d in m.modules() if isinstance(d, torch.nn.Dropout) and d.p > 0} == {0.1}
    blk = families["resnet"].stages[1]
    assert "drop_path" in {n for n, _ in blk.named_children()} or blk.drop_path is None
    with pytest.raises(ValueError, match=r"\[0, 1\)"): add_dropout(families["resnet"], 1.0)


def test_add_dropout_wraps_existing_slot():
    from open_clip.transformer import LayerScale
    m = clip_classifier(register_tiny_clip(), head="linear", num_classes=2).eval()
    b = m.stages[1]; b.ls_1 = LayerScale(64, 0.5)                    # a block with layer scale (tiny config: width 64)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(): y0 = m(x)
    add_dropout(m, 0.3)
    assert isinstance(b.ls_1, DropAfter) and b.ls_1.drop.p == 0.3 and isinstance(b.ls_1.fn, LayerScale)
    with torch.no_grad(): torch.testing.assert_close(m(x), y0)

def test_truncated_weights_file_is_named(tmp_path):
    "timm reads the file itself; safetensors' own error ('header too large', 'incomplete metadata') names no file."
    import safetensors.torch
    safetensors.torch.save_file(timm.create_model("test_resnet", num_classes=4).state_dict(), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-1000]); (tmp_path / "junk.safetensors").write_bytes(b"junk" * 8)
    for f in ("cut.safetensors", "junk.safetensors"):
        with pytest.raises(RuntimeError, match=rf"could not load weights .*{f} into timm model 'test_resnet'.*copy it again"):
            timm_classifier("test_resnet", 4, pretrained=tmp_path / f)
    assert timm_classifier("test_resnet", 4, pretrained=tmp_path / "w.safetensors") is not None


def test_branch_parts_equal_the_blocks_own_forward(families):
    from robust_nb.models import branch_parts, token_wise, pooled_token, Residual
    x = torch.rand(2, 3, 32, 32)
    for k, m0 in families.items():
        m = copy.deepcopy(m0).eval(); add_dropout(m, 0.3)
        z = m.prep(x)
        for s, kind in zip(m.stages[:-1], m.kinds[:-1]):
            if expects_dropout(s, kind):                                # a block with dropout (a BranchIn has none)
                det, sto = branch_parts(s)
                with torch.no_grad():
                    s.train(); torch.manual_seed(7); y = s(z)                 # the block's own forward, dropout on
                    torch.manual_seed(7); y2 = sto(det(z)); s.eval()         # cut at its dropout: same masks, same output
                torch.testing.assert_close(y2, y, atol=1e-5, rtol=1e-4, msg=lambda e: f"{k}: {e}")
            with torch.no_grad(): z = s(z)
    assert branch_parts(torch.nn.Linear(2, 2)) is None
    v = families["vit"]
    assert pooled_token(v.stages[-1]) and token_wise(v.stages[-2]) and token_wise(v.stages[-3])
    assert isinstance(v.stages[-4], Residual) and not token_wise(v.stages[-4])     # attention mixes tokens
    assert pooled_token(families["clip"].stages[-2]) and not pooled_token(families["resnet"].stages[-1])
    m = copy.deepcopy(families["resnet"]); add_dropout(m, 0.3)
    b = m.stages[1]; b.drop_block = torch.nn.Dropout(0.2)                  # a dropout before the slot: no cut
    assert branch_parts(b) is None


def test_clip_residual_stages_match_whole_blocks():
    name = register_tiny_clip()
    torch.manual_seed(0)
    a = clip_classifier(name, head="linear", num_classes=3).eval()
    b = clip_classifier(name, head="linear", num_classes=3, residual_stages=True).eval()
    b.load_state_dict({kb: va for (ka, va), kb in zip(a.state_dict().items(), b.state_dict())})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(): torch.testing.assert_close(b(x), a(x))
    assert b.kinds == ["stem", "block", "mlp", "block", "mlp", "norm", "head"] and b.n_blocks == a.n_blocks == 2
    assert len(feasible_fracs(b)) > len(feasible_fracs(a))                            # finer cut points


@pytest.mark.parametrize("name", ["test_resnet", "resnet50"])              # BasicBlock, Bottleneck
def test_branch_stages_same_function_shared_parameters(name):
    torch.manual_seed(0)
    a = timm_classifier(name, 4).eval(); b = branch_stages(a)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(): torch.testing.assert_close(b(x), a(x), atol=1e-5, rtol=1e-4)
    assert b.kinds.count("block") == a.n_blocks == b.kinds.count("conv") and _n(b) == _n(a)
    assert {id(p) for p in b.parameters()} == {id(p) for p in a.parameters()}       # views on the same modules
    z = b.prep(x)
    with torch.no_grad():
        for i, s in enumerate(b.stages[:-1]):
            y = s(z)
            if isinstance(s, BranchIn):                                             # [shortcut(x); h], h read by the last conv
                out = b.stages[i + 1]
                assert isinstance(out, BranchOut) and y.shape[1] == out.c + out.conv.in_channels
            z = y
    i = b.kinds.index("block")                                                      # a BranchIn carries no dropout by design
    assert not expects_dropout(b.stages[i], "block") and expects_dropout(b.stages[i + 1], "conv") and expects_dropout(a.stages[1], "block")
    with pytest.raises(ValueError, match="no timm ResNet"): branch_stages(timm_classifier("test_vit", 4, img_size=32, patch_size=8))
    with pytest.raises(TypeError, match="needs a StagedModel"): branch_stages(timm.create_model("test_resnet"))


def test_branch_stages_head_is_the_last_conv():
    sp = split_model(branch_stages(embedded_student(10)), blocks=2)
    whole = split_model(embedded_student(10), blocks=2)
    assert sp.n_tuned == whole.n_tuned and sp.kinds == ("block", "conv", "block", "conv", "head")
    assert sp.head_cut - sp.cut == 3 and isinstance(sp.head[0], BranchOut)          # head: block 8's last conv + pool + fc
    assert 0.2 < sp.head_frac < 0.3 < 0.5 < whole.head_frac
