import os, copy
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import pytest, torch, torch.nn.functional as F, timm, open_clip
from robust_nb.models import (timm_classifier, clip_classifier, embedded_student, split_model, register_tiny_clip,
                              StagedModel, OPENAI_TEMPLATES)


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
    with pytest.raises(ValueError, match="no tunable block"): split_model(s, frac=1e-4)
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
