"Strict weight loading in the Python API (robust_nb.models): class-count mismatches, explicit new heads, bit-exact loads, wrong architectures."
import os, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import pytest, torch, timm, open_clip
from robust_nb.models import timm_classifier, clip_classifier, register_tiny_clip, ClassMismatch, NewHeadWarning, load_weights

def _timm_file(path, name='test_resnet', num_classes=7):
    torch.manual_seed(0)
    m = timm.create_model(name, num_classes=num_classes)
    torch.save(m.state_dict(), path)
    return m.eval()

def _loaded(ref:dict, m) -> bool:
    "Every tensor of `ref` is bit-equal to some tensor of `m` (the staged model renames the keys)."
    vals = list(m.state_dict().values())
    return all(any(v.shape == w.shape and torch.equal(v, w) for w in vals) for v in ref.values())

def test_other_class_count_is_an_error_with_shapes(tmp_path):
    _timm_file(tmp_path / 'w7.pth')
    with pytest.raises(ClassMismatch) as e: timm_classifier('test_resnet', 5, pretrained=tmp_path / 'w7.pth')
    msg = str(e.value)
    assert 'classifier fc.weight has shape (7, ' in msg and '(7 classes) but 5 classes are needed (shape (5, ' in msg
    assert 'num_classes=7' in msg and 'new_head=True' in msg
    assert isinstance(e.value, ValueError) and e.value.shape[0] == 7 and e.value.num_classes == 5

def test_new_head_on_purpose_says_so(tmp_path):
    ref = _timm_file(tmp_path / 'w7.pth')
    with pytest.warns(NewHeadWarning, match='7-class classifier is replaced by a fresh 5-class head'):
        m = timm_classifier('test_resnet', 5, pretrained=tmp_path / 'w7.pth', new_head=True)
    assert m.num_classes == 5
    assert _loaded({k: v for k, v in ref.state_dict().items() if not k.startswith('fc.')}, m)          # all but the classifier
    assert not _loaded({'fc.weight': ref.fc.weight[:5]}, m)

@pytest.mark.parametrize('name', ['test_resnet', 'test_vit'])
def test_matching_counts_load_bit_exactly(tmp_path, name):
    "5 classes differ from timm's pretrained config (1000): timm's overlay path would re-initialise the classifier."
    ref = _timm_file(tmp_path / 'w5.pth', name, 5)
    with warnings.catch_warnings():
        warnings.simplefilter('error', NewHeadWarning)
        m = timm_classifier(name, 5, pretrained=tmp_path / 'w5.pth').eval()
    x = torch.rand(2, 3, *ref.pretrained_cfg['input_size'][1:])
    cfg = ref.pretrained_cfg
    xn = (x - torch.tensor(cfg['mean']).view(1, 3, 1, 1)) / torch.tensor(cfg['std']).view(1, 3, 1, 1)
    with torch.no_grad(): assert torch.allclose(m(x), ref(xn), atol=1e-5)
    assert _loaded(ref.state_dict(), m)                                 # every tensor, the classifier included
    assert timm_classifier(name, None, pretrained=tmp_path / 'w5.pth').num_classes == 5      # the file's count

def test_staged_file_round_trip(tmp_path):
    torch.manual_seed(0)
    a = timm_classifier('test_resnet', 3)
    torch.save({'state_dict': a.state_dict()}, tmp_path / 's.pt')
    b = timm_classifier('test_resnet', 3, pretrained=tmp_path / 's.pt')
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    with pytest.raises(ClassMismatch, match=r'\(3 classes\) but 4 classes'): timm_classifier('test_resnet', 4, pretrained=tmp_path / 's.pt')

def test_wrong_architecture_lists_keys(tmp_path):
    _timm_file(tmp_path / 'vit.pth', 'test_vit', 5)
    with pytest.raises(ValueError, match=r"does not fit timm model 'test_resnet': missing keys \['conv1.0.weight'.*unexpected keys \["):
        timm_classifier('test_resnet', 5, pretrained=tmp_path / 'vit.pth')

def test_clip_wrong_architecture_lists_keys(tmp_path):
    name = register_tiny_clip()
    torch.manual_seed(0)
    clip = open_clip.create_model(name)
    sd = clip.state_dict()
    torch.save(sd, tmp_path / 'ok.pt')
    m = clip_classifier(name, tmp_path / 'ok.pt', head='linear', num_classes=3)
    assert _loaded({k: v for k, v in sd.items() if k.startswith('visual.')}, m)
    bad = {k: v for k, v in sd.items() if not k.startswith('visual.transformer.resblocks.1.')}
    bad['visual.extra.weight'] = torch.zeros(2)
    torch.save(bad, tmp_path / 'bad.pt')
    with pytest.raises(ValueError) as e: clip_classifier(name, tmp_path / 'bad.pt', head='linear', num_classes=3)
    msg = str(e.value)
    assert 'bad.pt does not fit open_clip robust_nb-tiny-clip' in msg and 'missing keys [' in msg and 'visual.transformer.resblocks.1.' in msg
    assert "unexpected keys ['visual.extra.weight']" in msg

def test_load_weights_new_head_warns(tmp_path):
    import torch.nn as nn
    torch.save(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 7)).state_dict(), tmp_path / 'w.pt')
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 5))
    with pytest.raises(ClassMismatch, match=r'1.weight has shape \(7, 4\)'): load_weights(m, tmp_path / 'w.pt')
    with pytest.warns(NewHeadWarning, match='1.weight, 1.bias keep their fresh initialisation'): load_weights(m, tmp_path / 'w.pt', new_head=True)

def test_timm_conversions_still_apply(tmp_path):
    "timm's own checkpoint filter runs before the check: a ViT file at 160 px loads into a 32-px model (position embeddings resampled)."
    _timm_file(tmp_path / 'v.pth', 'test_vit', 5)
    m = timm_classifier('test_vit', 5, pretrained=tmp_path / 'v.pth', img_size=32)
    assert m(torch.rand(1, 3, 32, 32)).shape == (1, 5)
