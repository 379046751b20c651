"Loaders and suites of robust_nb.data on tiny fake trees and arrays written under tmp_path."
import importlib.util, sys, types
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from robust_nb import data as D

W = D.imagenet_wnids()

def tree(root, folders, n=2, hw=(20, 24), seed=0):
    rng = np.random.default_rng(seed)
    for f in folders:
        (Path(root)/f).mkdir(parents=True, exist_ok=True)
        for i in range(n): Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(Path(root)/f/f'{i}.png')
    return Path(root)

def labels_by_folder(shift):
    return {Path(p).parent.name: y for p, y in shift.dataset.samples}

# ---- class tables -------------------------------------------------------------------------------------------------
def test_wnid_tables():
    assert len(W) == 1000 and len(set(W)) == 1000 and W == sorted(W)
    assert (W[0], W[1], W[999]) == ('n01440764', 'n01443537', 'n15075141')
    names = D.imagenet_class_names()
    assert (names[0], names[1], names[207], names[999]) == ('tench', 'goldfish', 'golden retriever', 'toilet tissue')
    for sub in (D.imagenet_r_wnids(), D.imagenet_a_wnids()):
        assert len(sub) == 200 and set(sub) <= set(W) and sub == sorted(sub)
    assert len(set(D.imagenet_r_wnids()) & set(D.imagenet_a_wnids())) < 200

def test_objectnet_mapping():
    m = D.objectnet_mapping()
    assert len(m) == 113
    ids = [w for v in m.values() for w in v['wnids']]
    assert len(ids) == 125 and len(set(ids)) == 125 and set(ids) <= set(W)
    assert m['alarm_clock']['wnids'] == [W[409], W[530]]            # analog clock, digital clock
    assert m['still_camera']['wnids'] == [W[732], W[759]]           # Polaroid camera, reflex camera

# ---- Shift / Suite ------------------------------------------------------------------------------------------------
def test_suite_api():
    ds = torch.utils.data.TensorDataset(torch.rand(3, 3, 4, 4), torch.arange(3))
    s = D.Suite('t', 3, 'abc', [D.Shift('clean', ds), D.Shift('n', ds, 'natural'),
                                D.Shift('fog-2', ds, 'corruption', 'fog', 2, on_the_fly=True)])
    assert [x.name for x in s] == ['clean', 'n', 'fog-2'] and len(s) == 3 and s[0] is s['clean']
    assert s.clean.name == 'clean' and [x.name for x in s.natural] == ['n'] and [x.name for x in s.corruptions] == ['fog-2']
    assert s.subset(['fog-2', 'clean']).names == ['clean', 'fog-2']
    with pytest.raises(KeyError, match="shifts: clean, n, fog-2"): s['sketch']
    with pytest.raises(ValueError, match="duplicate"): D.Suite('t', 3, 'abc', [D.Shift('a', ds), D.Shift('a', ds, 'natural')])
    with pytest.raises(ValueError, match="kind must be one of"): D.Shift('a', ds, 'weird')
    with pytest.raises(ValueError, match="needs `corruption"): D.Shift('a', ds, 'corruption', severity=1)
    with pytest.raises(ValueError, match="1..5"): D.Shift('a', ds, 'corruption', 'fog', 0)
    with pytest.raises(ValueError, match="only kind='corruption'"): D.Shift('a', ds, 'natural', on_the_fly=True)
    with pytest.raises(ValueError, match="1-D bool"): D.Shift('a', ds, 'natural', class_mask=torch.ones(3))
    with pytest.raises(ValueError, match="2 class_names"): D.Suite('t', 3, 'ab', [])

@pytest.fixture
def synth(monkeypatch):
    "The real robust_nb.synthetic when it exists, else a stand-in with the contract's names."
    for name, attrs in [('synthetic', None), ('corruptions', None)]:
        if importlib.util.find_spec(f'robust_nb.{name}') is None:
            if name == 'synthetic':
                class FakeSyn(torch.utils.data.Dataset):
                    def __init__(self, domain, n, size=32, seed=0, split='train', cache=False): self.args = (domain, n, size, seed, split)
                    def __len__(self): return self.args[1]
                    def __getitem__(self, i): return torch.rand(3, self.args[2], self.args[2]), i % 10
                mod = types.SimpleNamespace(DOMAINS=('photo', 'v2', 'sketch', 'rendition', 'hard'), CLASSES=tuple('abcdefghij'),
                                            NUM_CLASSES=10, SyntheticDataset=FakeSyn)
            else:
                mod = types.SimpleNamespace(CORRUPTIONS=('gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur',
                    'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate',
                    'jpeg_compression'), EXTRA_CORRUPTIONS=('speckle_noise', 'gaussian_blur', 'spatter', 'saturate'))
            monkeypatch.setitem(sys.modules, f'robust_nb.{name}', mod)
    from robust_nb import synthetic
    return synthetic

def test_embedded_suite(synth):
    s = D.embedded_suite(size=32, n=16, seed=3)
    from robust_nb.corruptions import CORRUPTIONS
    assert s.names[:5] == ['photo', 'v2', 'sketch', 'rendition', 'hard'] and s.clean.name == 'photo'
    assert len(s.corruptions) == 5*len(CORRUPTIONS) == len(s) - 5
    assert s.num_classes == synth.NUM_CLASSES and s.class_names == list(synth.CLASSES)
    for c in s.corruptions: assert c.on_the_fly and c.dataset is s.clean.dataset and c.corruption in CORRUPTIONS
    for sh in s:
        x, y = sh.dataset[0]
        assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and 0 <= int(y) < s.num_classes
    assert len(s['hard'].dataset) == 16 and s.info == dict(size=32, n=16, seed=3) and s.subset(['v2']).info == s.info
    with pytest.raises(KeyError, match="valid names: gaussian_noise"): D.embedded_suite(n=4, corruptions=['gausian_noise'])
    with pytest.raises(ValueError, match="1..5"): D.embedded_suite(n=4, corruptions=['fog'], severities=(0,))
    with pytest.raises(KeyError, match="unknown natural"): D.embedded_suite(n=4, corruptions=[], natural=['photo'])

# ---- folder loaders -----------------------------------------------------------------------------------------------
def test_v2_int_folders_not_string_sorted(tmp_path):
    folders = [str(i) for i in (0, 1, 2, 3, 9, 10, 11, 20, 100, 999)]
    s = D.imagenet_v2(tree(tmp_path/'v2', folders), strict=False)
    assert labels_by_folder(s) == {f: int(f) for f in folders}
    x, y = s.dataset[len(s.dataset) - 1]
    assert x.shape == (3, 224, 224) and y == 999 and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1

def test_val_sketch_wnid_order(tmp_path):
    picks = [W[500], W[7], W[0], W[999]]                       # created out of order
    for fn in (D.imagenet_val, D.imagenet_sketch):
        s = fn(tree(tmp_path/fn.__name__, picks), strict=False)
        assert labels_by_folder(s) == {w: W.index(w) for w in picks}
    assert D.imagenet_val(tmp_path/'imagenet_val', strict=False).kind == 'clean'
    assert D.imagenet_sketch(tmp_path/'imagenet_sketch', strict=False).kind == 'natural'

def test_preprocessing_configurable(tmp_path):
    r = tree(tmp_path/'val', W[:1], hw=(300, 400))
    assert D.imagenet_val(r, strict=False).dataset[0][0].shape == (3, 224, 224)
    assert D.imagenet_val(r, strict=False, resize=160, crop=128).dataset[0][0].shape == (3, 128, 128)
    assert D.imagenet_val(r, strict=False, resize=None, crop=None).dataset[0][0].shape == (3, 300, 400)

def test_r_a_masks(tmp_path):
    r = D.imagenet_r(tree(tmp_path/'r', D.imagenet_r_wnids()[:2]), strict=False)
    a = D.imagenet_a(tree(tmp_path/'a', D.imagenet_a_wnids()[-2:]), strict=False)
    for s, wn in ((r, D.imagenet_r_wnids()), (a, D.imagenet_a_wnids())):
        assert s.class_mask.shape == (1000,) and s.class_mask.dtype == torch.bool and int(s.class_mask.sum()) == 200
        assert s.class_mask.nonzero().flatten().tolist() == sorted(W.index(w) for w in wn)
        for p, y in s.dataset.samples: assert s.class_mask[y] and W[y] == Path(p).parent.name
    logits = torch.zeros(2, 1000); logits[:, 0] = 10.; logits[0, 1] = 3.; logits[1, 2] = 4.   # tench (index 0) is not in R
    assert r.map_logits(logits).argmax(1).tolist() == [1, 2]
    assert torch.allclose(r.map_logits(logits).softmax(1).sum(1), torch.ones(2)) and r.map_logits(logits).softmax(1)[:, 0].eq(0).all()
    only_a = sorted(set(D.imagenet_a_wnids()) - set(D.imagenet_r_wnids()))[0]
    with pytest.raises(ValueError, match="not one of ImageNet-R's 200"): D.imagenet_r(tree(tmp_path/'r2', [only_a]), strict=False)

def test_imagenet_c_no_second_resize(tmp_path):
    root = tmp_path/'c'
    tree(root/'fog'/'3', W[:2], hw=(224, 224)); tree(root/'gaussian_noise'/'3', W[:2], hw=(224, 224))
    shifts = D.imagenet_c_shifts(root, severities=(3,), strict=False)
    assert [s.name for s in shifts] == ['gaussian_noise-3', 'fog-3']          # ImageNet-C order, not alphabetical
    s = shifts[1]
    assert (s.kind, s.corruption, s.severity, s.on_the_fly) == ('corruption', 'fog', 3, False)
    p, y = s.dataset.samples[0]
    x, y2 = s.dataset[0]
    assert y2 == y == W.index(Path(p).parent.name)
    assert torch.equal(x, torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1).float()/255)   # bit-exact: ToTensor only
    tree(root/'pixelate'/'1', W[:1], hw=(256, 256))
    with pytest.raises(ValueError, match="256x256 but this -C tree should hold 224x224"): D.imagenet_c(root, 'pixelate', 1, strict=False).dataset[0]
    assert D.imagenet_c(root, 'pixelate', 1, size=None, strict=False).dataset[0][0].shape == (3, 256, 256)
    with pytest.raises(FileNotFoundError, match="fog/5"): D.imagenet_c(root, 'fog', 5, strict=False)
    with pytest.raises(ValueError, match="1..5"): D.imagenet_c(root, 'fog', 6, strict=False)

def test_objectnet(tmp_path):
    cls = D.objectnet_classes()
    root = tree(tmp_path/'on', ['chair', 'wok', 'squeegee'], hw=(30, 30))      # squeegee: not an ImageNet class -> skipped
    s = D.objectnet(root, strict=False)
    assert labels_by_folder(s) == {'chair': cls.index('chair'), 'wok': cls.index('wok')}
    assert s.info['protocol'] == 'max_over_mapped' and s.class_mask is None
    # the 2-px border crop happens before the transform
    s2 = D.objectnet(root, strict=False, transform=D.exact_transform(None))
    x, _ = s2.dataset[0]
    raw = torch.from_numpy(np.array(Image.open(s2.dataset.samples[0][0]))).permute(2, 0, 1).float()/255
    assert x.shape == (3, 26, 26) and torch.equal(x, raw[:, 2:-2, 2:-2])
    # protocols
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 1000, generator=g)
    m = D.objectnet_mapping()
    lt = D.ObjectNetLogits('max_over_mapped')(logits)
    ref = torch.stack([logits[:, [W.index(w) for w in m[c]['wnids']]].max(1).values for c in cls], 1)
    assert lt.shape == (64, 113) and torch.equal(lt, ref) and torch.equal(s.map_logits(logits), ref)
    pred = D.ObjectNetLogits('argmax_1000')(logits).argmax(1)
    top = logits.argmax(1)
    to_on = {W.index(w): i for i, c in enumerate(cls) for w in m[c]['wnids']}
    assert pred.tolist() == [to_on.get(int(t), 113) for t in top]
    with pytest.raises(ValueError, match="valid: \\('max_over_mapped'"): D.objectnet(root, protocol='top5', strict=False)
    with pytest.raises(ValueError, match="expects 1000"): D.ObjectNetLogits()(torch.randn(2, 113))

def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path/'missing')): D.imagenet_val(tmp_path/'missing')
    tree(tmp_path/'val', [W[0], 'n99999999'])
    with pytest.raises(ValueError, match="n99999999 is not an ImageNet-1k wnid"): D.imagenet_val(tmp_path/'val', strict=False)
    tree(tmp_path/'val2', [W[0]]); (tmp_path/'val2'/W[1]).mkdir()
    with pytest.raises(ValueError, match=f"class folder {tmp_path/'val2'/W[1]} holds no images"): D.imagenet_val(tmp_path/'val2', strict=False)
    with pytest.raises(ValueError, match="has 1 class folders, expected 1000"): D.imagenet_val(tree(tmp_path/'val3', [W[0]]))
    flat = tmp_path/'flat'; flat.mkdir(); Image.new('RGB', (8, 8)).save(flat/'ILSVRC2012_val_00000001.png')
    with pytest.raises(ValueError, match="1 loose images: sort them into one folder per class"): D.imagenet_val(flat)
    with pytest.raises(ValueError, match="not a class index 0..999"): D.imagenet_v2(tree(tmp_path/'v2', ['1000']), strict=False)

# ---- CIFAR-C ------------------------------------------------------------------------------------------------------
def cifar(root, n=6, classes=10, corruptions=('fog', 'gaussian_noise')):
    rng = np.random.default_rng(0); root.mkdir(parents=True, exist_ok=True)
    for c in corruptions: np.save(root/f'{c}.npy', rng.integers(0, 255, (5*n, 32, 32, 3), dtype=np.uint8))
    np.save(root/'labels.npy', np.tile(np.arange(n) % classes, 5).astype(np.int64))
    return root

def test_cifar_c(tmp_path):
    root = cifar(tmp_path/'c10')
    x_all = np.load(root/'fog.npy')
    s = D.cifar_c(root, 'fog', 4, n_per_severity=6)
    assert (s.corruption, s.severity, len(s.dataset)) == ('fog', 4, 6)
    x, y = s.dataset[5]
    assert torch.equal(x, torch.from_numpy(x_all[3*6 + 5]).permute(2, 0, 1).float()/255) and y == 5
    clean = torch.utils.data.TensorDataset(torch.rand(6, 3, 32, 32), torch.arange(6))
    suite = D.cifar_c_suite(root, clean=clean, n_per_severity=6)
    assert suite.names[0] == 'clean' and len(suite.corruptions) == 10 and suite.class_names[0] == 'airplane'
    assert [c.corruption for c in suite.corruptions][::5] == ['gaussian_noise', 'fog']
    assert D.cifar_c_suite(cifar(tmp_path/'c100', classes=100), 100, n_per_severity=6).class_names[-1] == 'worm'

def test_cifar_c_bad(tmp_path):
    root = cifar(tmp_path/'c', n=6)
    with pytest.raises(ValueError, match=r"\[50000,32,32,3\] uint8"): D.cifar_c(root, 'fog', 1)      # wrong length
    np.save(root/'chw.npy', np.zeros((30, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="chw.npy has shape"): D.cifar_c(root, 'chw', 1, n_per_severity=6)
    np.save(root/'flt.npy', np.zeros((30, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="float32"): D.cifar_c(root, 'flt', 1, n_per_severity=6)
    with pytest.raises(FileNotFoundError, match="snow.npy does not exist"): D.cifar_c(root, 'snow', 1, n_per_severity=6)
    np.save(root/'labels.npy', np.tile(np.arange(6)*20, 5))
    with pytest.raises(ValueError, match="class-count mismatch.*num_classes=100"): D.cifar_c(root, 'fog', 1, n_per_severity=6)
    np.save(root/'labels.npy', np.arange(7))
    with pytest.raises(ValueError, match=r"expected \(30,\)"): D.cifar_c(root, 'fog', 1, n_per_severity=6)

# ---- ImageNet suite -----------------------------------------------------------------------------------------------
def test_imagenet_suite(tmp_path):
    r = tmp_path/'in'
    tree(r/'val', W[:2]); tree(r/'imagenetv2-matched-frequency-format-val', ['0', '10', '2'])
    tree(r/'my-sketch', W[3:5]); tree(r/'imagenet-a', D.imagenet_a_wnids()[:1]); tree(r/'objectnet-1.0'/'images', ['mug'])
    tree(r/'imagenet-c'/'contrast'/'1', W[:1], hw=(224, 224))
    s = D.imagenet_suite(r, layout=dict(sketch='my-sketch'), strict=False, severities=(1,), objectnet_protocol='argmax_1000')
    assert s.names == ['imagenet', 'imagenet_v2', 'imagenet_sketch', 'imagenet_a', 'objectnet', 'contrast-1']
    assert s.num_classes == 1000 and len(s.class_names) == 1000 and s.clean.name == 'imagenet'
    assert labels_by_folder(s['imagenet_v2']) == {'0': 0, '10': 10, '2': 2}
    assert s['objectnet'].logit_transform.protocol == 'argmax_1000' and s['imagenet_a'].class_mask.sum() == 200
    t = s.table()
    assert t['shift'].tolist() == s.names and t.scored_classes.tolist() == [1000, 1000, 1000, 200, 'mapped', 1000]
    assert t.set_index('shift').loc['contrast-1', 'severity'] == 1
    with pytest.raises(KeyError, match="unknown layout keys"): D.imagenet_suite(r, layout=dict(imagenet_r='x'))
    with pytest.raises(FileNotFoundError, match="no ImageNet test set found"): D.imagenet_suite(tmp_path/'nothing')

def test_val_flat_with_loc_csv(tmp_path):
    flat = tmp_path/'val'; flat.mkdir()
    for i in (1, 2, 3): Image.new('RGB', (8, 8), (i, 0, 0)).save(flat/f'ILSVRC2012_val_{i:08d}.JPEG')
    csv = tmp_path/'LOC_val_solution.csv'
    csv.write_text(f"ImageId,PredictionString\nILSVRC2012_val_00000003,{W[10]} 0 0 4 4\n"
                   f"ILSVRC2012_val_00000001,{W[999]} 0 0 4 4 {W[999]} 1 1 2 2\nILSVRC2012_val_00000002,{W[0]} 1 1 3 3\n")
    s = D.imagenet_val(flat, labels=csv, strict=False)
    assert [(Path(p).name, y) for p, y in s.dataset.samples] == [('ILSVRC2012_val_00000001.JPEG', 999),
        ('ILSVRC2012_val_00000002.JPEG', 0), ('ILSVRC2012_val_00000003.JPEG', 10)]
    with pytest.raises(ValueError, match="covers 3 of 1000 classes"): D.imagenet_val(flat, labels=csv)
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000009,n01440764 0 0 1 1\n")
    with pytest.raises(FileNotFoundError, match="has no such image"): D.imagenet_val(flat, labels=csv, strict=False)
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n00000001 0 0 1 1\n")
    with pytest.raises(ValueError, match="unknown wnid 'n00000001'"): D.imagenet_val(flat, labels=csv, strict=False)
    with pytest.raises(FileNotFoundError, match="LOC_val_solution"): D.imagenet_val(flat, labels=tmp_path/'none.csv', strict=False)

def test_dataset_reprs_identify_the_data(tmp_path):
    "evaluate keys its caches on repr(dataset): two different datasets must never share one."
    a = D.imagenet_val(tree(tmp_path/'a', W[:2]), strict=False).dataset
    b = D.imagenet_val(tree(tmp_path/'b', W[:2]), strict=False).dataset          # same sizes and classes, other files
    c = D.imagenet_val(tree(tmp_path/'c', [W[0], W[2]]), strict=False).dataset    # same files names, other labels
    assert len({repr(a), repr(b), repr(c)}) == 3 and str(tmp_path/'a') in repr(a)
    assert repr(a) == repr(D.imagenet_val(tmp_path/'a', strict=False).dataset)
    root = cifar(tmp_path/'cc')
    r = {repr(D.cifar_c(root, c, s, n_per_severity=6).dataset) for c in ('fog', 'gaussian_noise') for s in (1, 2)}
    assert len(r) == 4

def test_objectnet_c_suite(tmp_path):
    cls = D.objectnet_classes()
    for s in (1, 3): tree(tmp_path/'onc'/'snow'/str(s), ['mug', 'wok'], hw=(224, 224)); tree(tmp_path/'onc'/'brightness'/str(s), ['mug'], hw=(224, 224))
    clean = D.objectnet(tree(tmp_path/'on', ['mug']), strict=False, protocol='argmax_1000')
    s = D.objectnet_c_suite(tmp_path/'onc', protocol='argmax_1000', clean=clean, severities=(1, 3), strict=False)
    assert s.names == ['objectnet', 'snow-1', 'snow-3', 'brightness-1', 'brightness-3']
    sh = s['snow-3']
    assert (sh.kind, sh.corruption, sh.severity) == ('corruption', 'snow', 3) and sh.logit_transform.protocol == 'argmax_1000'
    assert sorted(set(sh.dataset.targets)) == sorted([cls.index('mug'), cls.index('wok')])
    assert sh.map_logits(torch.randn(3, 1000)).shape == (3, 114)
    with pytest.raises(ValueError, match="has 2 class folders, expected 113"): D.objectnet_c_suite(tmp_path/'onc', severities=(1,))
    with pytest.raises(FileNotFoundError, match="--objectnet"): D.objectnet_c_suite(tmp_path/'nope')

# ---- empty class folders: an error naming them, or a reported skip ------------------------------------------------
def test_empty_class_folder_is_an_error_or_a_reported_skip(tmp_path):
    root = tree(tmp_path/'if', ['a', 'c'])
    (root/'b').mkdir(); (root/'d'/'nested').mkdir(parents=True)
    Image.new('RGB', (8, 8)).save(root/'d'/'nested'/'x.png')            # images one level too deep
    with pytest.raises(ValueError, match=r"2 class folders hold no images .*sub-folders of a class folder are not read.*them \(.*if/b, .*if/d\), or pass skip_empty=True"):
        D.image_folder(root, size=8)
    with pytest.warns(UserWarning, match=r"skipped 2 empty class folder\(s\): .*if/b, .*if/d"):
        ds, classes = D.image_folder(root, size=8, skip_empty=True)
    assert classes == ['a', 'c'] and sorted(set(ds.targets)) == [0, 1] and [p.name for p in ds.skipped_empty] == ['b', 'd']
    with pytest.warns(UserWarning, match=r"skipped 1 empty"):             # explicit classes keep their labels
        ds, classes = D.image_folder(root, classes=['c', 'b', 'a'], size=8, skip_empty=True)
    assert classes == ['c', 'b', 'a'] and sorted(set(ds.targets)) == [0, 2] and [p.name for p in ds.skipped_empty] == ['b']
    ds, _ = D.image_folder(root, classes=['a', 'c'], size=8)               # empty folders not asked for: no error
    assert len(ds) == 4 and ds.skipped_empty == []
    # scan_classes, under every loader: the same error, or a warning with skip_empty
    tree(tmp_path/'val', [W[0], W[2]]); (tmp_path/'val'/W[1]).mkdir()
    with pytest.raises(ValueError, match=rf"class folder .*{W[1]} holds no images"): D.imagenet_val(tmp_path/'val', strict=False)
    with pytest.warns(UserWarning, match=W[1]):
        s = D.scan_classes(tmp_path/'val', lambda d: W.index(d.name), 'ImageNet val', 'fix', skip_empty=True)
    assert sorted({y for _, y in s}) == [0, 2]

def test_load_errors_name_the_file(tmp_path):
    root = tree(tmp_path/'if', ['a'], n=2, hw=(40, 40))
    ok = (root/'a'/'1.png').read_bytes(); (root/'a'/'1.png').write_bytes(ok[:len(ok) // 2])   # truncated: PIL alone says
    ds, _ = D.image_folder(root, size=8)                                                        # "image file is truncated"
    ds[0]
    with pytest.raises(OSError, match=r"could not read image .*a/1\.png .*truncated.*replace or delete it"): ds[1]
    np.save(tmp_path/'fog.npy', np.zeros((5*2, 32, 32, 3), np.uint8)); np.save(tmp_path/'labels.npy', np.zeros(10, np.int64))
    (tmp_path/'fog.npy').write_bytes((tmp_path/'fog.npy').read_bytes()[:2000])                  # numpy alone: "mmap length ..."
    with pytest.raises(ValueError, match=r"could not read CIFAR-C file .*fog\.npy.*download it again"): D.cifar_c(tmp_path, 'fog', 1, n_per_severity=2)
