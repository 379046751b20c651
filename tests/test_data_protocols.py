"Transfer-suite, Tiny-ImageNet and Stylized-ImageNet loaders on tiny fabricated files in each dataset's released layout."
import os, pickle
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from scipy.io import savemat
from robust_nb import data as D

def _img(path, hw=(8, 10), seed=0):
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)).save(path)
    return path

def _check(ds, labels, classes=None, size=(3, 32, 32)):
    assert [y for _, y in (ds[i] for i in range(len(ds)))] == labels
    x, _ = ds[0]
    assert x.shape == size and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    if classes is not None: assert ds.classes[:len(classes)] == classes

SMALL = dict(resize=32, crop=32)

def test_list_datasets_names_every_protocol():
    names = set(D.list_datasets())
    assert {'flowers102', 'stanford_cars', 'fgvc_aircraft', 'cifar100', 'sun397', 'places365', 'inaturalist', 'tiny_imagenet',
            'stylized_imagenet', 'imagenet', 'imagenet_v2', 'imagenet_sketch', 'imagenet_r', 'imagenet_a', 'imagenet_c',
            'objectnet', 'objectnet_c', 'cifar10_c', 'cifar100_c', 'embedded'} <= names
    assert set(D.TRANSFER_SPLITS) <= names
    with pytest.raises(KeyError, match='tiny_imagenet'): D.load_dataset('tinyimagenet', '.')
    with pytest.raises(KeyError, match='flowers102'): D.transfer_splits('imagenet', '.')

def _flowers(root):
    b = root/'flowers-102'
    for i in range(1, 7): _img(b/'jpg'/f'image_{i:05d}.jpg', seed=i)
    savemat(b/'imagelabels.mat', {'labels': np.array([[1, 2, 1, 3, 2, 1]])})
    savemat(b/'setid.mat', {'trnid': np.array([[1, 2]]), 'valid': np.array([[3, 4]]), 'tstid': np.array([[5, 6]])})

def test_flowers102(tmp_path):
    _flowers(tmp_path)
    _check(D.flowers102(tmp_path, 'test', verify=False, **SMALL), [1, 0], ['pink primrose', 'hard-leaved pocket orchid'])
    tr, te = D.transfer_splits('flowers102', tmp_path, verify=False, **SMALL)
    assert tr.targets == [0, 1, 0, 2] and te.split == 'test' and len(tr.classes) == 102
    with pytest.raises(ValueError, match='md5.*verify=False'): D.flowers102(tmp_path)   # fabricated .mat files fail torchvision's md5
    os.remove(tmp_path/'flowers-102'/'setid.mat')
    with pytest.raises(FileNotFoundError, match=r'setid.mat not found; expected the layout flowers-102/\{jpg'): D.flowers102(tmp_path)

def _cars(root):
    b = root/'stanford_cars'
    def annos(names, classes):
        a = np.zeros(len(names), dtype=[('bbox_x1', 'O'), ('fname', 'O'), ('class', 'O')])
        a['fname'], a['class'], a['bbox_x1'] = names, classes, [0]*len(names)
        return {'annotations': a}
    (b/'devkit').mkdir(parents=True)
    savemat(b/'devkit'/'cars_meta.mat', {'class_names': np.array(['AM General Hummer SUV 2000', 'Acura RL Sedan 2012', 'Audi R8 Coupe 2012'], dtype=object)})
    savemat(b/'devkit'/'cars_train_annos.mat', annos(['00001.jpg', '00002.jpg'], [3, 1]))
    savemat(b/'cars_test_annos_withlabels.mat', annos(['00001.jpg', '00002.jpg', '00003.jpg'], [2, 2, 1]))
    for i in (1, 2): _img(b/'cars_train'/f'{i:05d}.jpg', seed=i)
    for i in (1, 2, 3): _img(b/'cars_test'/f'{i:05d}.jpg', seed=10 + i)

def test_stanford_cars(tmp_path):
    _cars(tmp_path)
    _check(D.stanford_cars(tmp_path, 'train', **SMALL), [2, 0], ['AM General Hummer SUV 2000'])
    _check(D.stanford_cars(tmp_path, 'test', **SMALL), [1, 1, 0])
    os.remove(tmp_path/'stanford_cars'/'cars_test'/'00003.jpg')
    with pytest.raises(FileNotFoundError, match='00003.jpg but it does not exist'): D.stanford_cars(tmp_path, 'test')
    with pytest.raises(FileNotFoundError, match='stanford_cars/devkit/cars_meta.mat'): D.stanford_cars(tmp_path/'x')

def test_fgvc_aircraft(tmp_path):
    d = tmp_path/'fgvc-aircraft-2013b'/'data'; d.mkdir(parents=True)
    (d/'variants.txt').write_text('707-320\n727-200\nA300B4\n')
    (d/'images_variant_test.txt').write_text('1025794 A300B4\n1340192 707-320\n')
    (d/'images_variant_trainval.txt').write_text('0034309 727-200\n')
    for i in ('1025794', '1340192', '0034309'): _img(d/'images'/f'{i}.jpg')
    _check(D.fgvc_aircraft(tmp_path, 'test', **SMALL), [2, 0], ['707-320', '727-200', 'A300B4'])
    assert D.transfer_splits('fgvc_aircraft', tmp_path)[0].targets == [1]
    with pytest.raises(FileNotFoundError, match='images_variant_val.txt'): D.fgvc_aircraft(tmp_path, 'val')
    (d/'images_variant_test.txt').write_text('1025794 A380\n')
    with pytest.raises(ValueError, match="could not parse.*A380"): D.fgvc_aircraft(tmp_path, 'test')

def test_cifar100(tmp_path):
    b = tmp_path/'cifar-100-python'; b.mkdir()
    x = np.random.default_rng(0).integers(0, 255, (3, 3072), dtype=np.uint8)
    for f, y in (('train', [5, 7, 99]), ('test', [1, 0, 2])):
        (b/f).write_bytes(pickle.dumps({'data': x, 'fine_labels': y, 'coarse_labels': [0]*3}))
    (b/'meta').write_bytes(pickle.dumps({'fine_label_names': D.CIFAR100_CLASSES}))
    te = D.cifar100(tmp_path, 'test', verify=False)
    _check(te, [1, 0, 2], ['apple', 'aquarium_fish'])
    assert torch.equal(te[0][0], torch.from_numpy(x[0].reshape(3, 32, 32)).float() / 255)   # CHW planes, as released
    with pytest.raises(ValueError, match='md5'): D.cifar100(tmp_path)

def test_sun397_official_partition(tmp_path):
    b = tmp_path/'SUN397'; b.mkdir()
    (b/'ClassName.txt').write_text('/a/abbey\n/b/bakery/shop\n')
    for p in ('a/abbey/sun_aa.jpg', 'a/abbey/sun_ab.jpg', 'b/bakery/shop/sun_ba.jpg', 'b/bakery/shop/sun_bb.jpg'): _img(b/p)
    (b/'Partitions').mkdir()
    (b/'Partitions'/'Training_01.txt').write_text('/a/abbey/sun_aa.jpg\n/b/bakery/shop/sun_ba.jpg\n')
    (b/'Partitions'/'Testing_01.txt').write_text('/b/bakery/shop/sun_bb.jpg\n/a/abbey/sun_ab.jpg\n')
    tr, te = D.transfer_splits('sun397', tmp_path, **SMALL)
    _check(tr, [0, 1], ['abbey', 'bakery/shop']); _check(te, [1, 0])
    assert {Path(p).name for p, _ in tr.samples}.isdisjoint(Path(p).name for p, _ in te.samples)
    (b/'Partitions'/'Testing_01.txt').write_text('/a/abbey/sun_zz.jpg\n')
    with pytest.raises(FileNotFoundError, match='sun_zz.jpg'): D.sun397(tmp_path, 'test')
    with pytest.raises(FileNotFoundError, match='Training_02.txt'): D.sun397(tmp_path, 'train', partition=2)

def test_places365(tmp_path):
    (tmp_path/'categories_places365.txt').write_text('/a/airfield 0\n/b/bakery/shop 1\n/c/canyon 2\n')
    (tmp_path/'places365_val.txt').write_text('Places365_val_00000001.jpg 2\nPlaces365_val_00000002.jpg 0\n')
    (tmp_path/'places365_train_standard.txt').write_text('/a/airfield/00000001.jpg 0\n/b/bakery/shop/00000001.jpg 1\n')
    for f in ('val_large/Places365_val_00000001.jpg', 'val_large/Places365_val_00000002.jpg',
              'data_large_standard/a/airfield/00000001.jpg', 'data_large_standard/b/bakery/shop/00000001.jpg'): _img(tmp_path/f)
    tr, va = D.transfer_splits('places365', tmp_path, verify=False, **SMALL)
    _check(va, [2, 0], ['/a/airfield', '/b/bakery/shop', '/c/canyon']); _check(tr, [0, 1])
    with pytest.raises(FileNotFoundError, match='val_256'): D.places365(tmp_path, 'val', small=True)
    with pytest.raises(ValueError, match="test labels are not public"): D.places365(tmp_path, 'test')

def test_inaturalist_2021(tmp_path):
    cats = ['00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris',
            '00001_Plantae_Tracheophyta_Magnoliopsida_Rosales_Rosaceae_Rosa_canina']
    for c, fs in zip(cats, (['b.jpg', 'a.jpg'], ['c.jpg'])):
        for f in fs: _img(tmp_path/'2021_valid'/c/f)
    va = D.inaturalist(tmp_path, 'val', **SMALL)
    _check(va, [0, 0, 1], cats)
    assert [Path(p).name for p, _ in va.samples] == ['a.jpg', 'b.jpg', 'c.jpg']   # sorted, not os.listdir order
    with pytest.raises(FileNotFoundError, match='2021_train_mini'): D.inaturalist(tmp_path, 'train_mini')
    assert not (tmp_path/'2021_train_mini').exists()

def _tiny(root):
    t = root/'tiny-imagenet-200'
    (t/'val').mkdir(parents=True)
    (t/'wnids.txt').write_text('n02\nn01\n'); (t/'words.txt').write_text('n01\tgoldfish, Carassius auratus\nn02\tshark\nn03\tx\n')
    for w in ('n01', 'n02'):
        for i in range(2): _img(t/'train'/w/'images'/f'{w}_{i}.JPEG', hw=(64, 64), seed=i)
    for i in range(3): _img(t/'val'/'images'/f'val_{i}.JPEG', hw=(64, 64), seed=9 + i)
    (t/'val'/'val_annotations.txt').write_text('val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t1\t2\t50\t60\nval_2.JPEG\tn02\t0\t0\t9\t9\n')
    return t

def test_tiny_imagenet(tmp_path):
    t = _tiny(tmp_path)
    tr, va = D.transfer_splits('tiny_imagenet', tmp_path)       # the parent folder or tiny-imagenet-200 itself
    _check(tr, [0, 0, 1, 1], ['goldfish', 'shark'], size=(3, 64, 64)); _check(va, [1, 0, 1], size=(3, 64, 64))
    assert D.tiny_imagenet(t, 'val').targets == va.targets
    (t/'val'/'val_annotations.txt').write_text('val_0.JPEG\tn09\t0\t0\t63\t63\n')
    with pytest.raises(ValueError, match="line 1.*wnids.txt"): D.tiny_imagenet(t, 'val')
    with pytest.raises(FileNotFoundError, match=r'train/<wnid>/images'): D.tiny_imagenet(tmp_path/'none', 'train')

def test_stylized_imagenet_uses_imagenet_order(tmp_path):
    w = D.imagenet_wnids()
    for k in (7, 3): _img(tmp_path/w[k]/'a.png')
    s = D.stylized_imagenet(tmp_path, strict=False, **SMALL)
    assert s.kind == 'natural' and sorted(s.dataset.targets) == [3, 7]
    with pytest.raises(ValueError, match='class-count mismatch'): D.stylized_imagenet(tmp_path)
    _img(tmp_path/'n99999999'/'a.png')
    with pytest.raises(ValueError, match='not an ImageNet-1k wnid'): D.stylized_imagenet(tmp_path, strict=False)

def _mp4(path, levels, size=32):
    "An H.264 video of uniform grey frames (levels in 0..255), encoded with PyAV as ImageNet-P's videos are H.264."
    av = pytest.importorskip('av')
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w') as c:
        s = c.add_stream('libx264', rate=10); s.width = s.height = size; s.pix_fmt = 'yuv420p'; s.options = {'qp': '0'}
        for v in levels:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), v, np.uint8), format='rgb24')): c.mux(pkt)
        for pkt in s.encode(): c.mux(pkt)
    return path

class _Brightness(torch.nn.Module):
    "5 classes, one per centre 0, .25, .5, .75, 1: logits = -(mean brightness - centre)^2, so rankings are known by hand."
    def forward(self, x): return -(x.mean((1, 2, 3))[:, None] - torch.linspace(0, 1, 5)) ** 2

LEVELS = [0, 0, 115, 115, 255, 255]   # predictions 0 0 2 2 4 4; rankings [0,1,2,3,4] -> [2,1,3,0,4] -> [4,3,2,1,0]

def test_imagenet_p_videos(tmp_path):
    w = D.imagenet_wnids()
    _mp4(tmp_path/'rotate'/w[4]/'v1.mp4', LEVELS); _mp4(tmp_path/'rotate'/w[1]/'v0.mp4', LEVELS[:3])
    _mp4(tmp_path/'gaussian_noise_2'/w[4]/'v1.mp4', LEVELS)
    v = D.imagenet_p(tmp_path, 'rotate', strict=False)
    assert v.targets == [1, 4] and 'imagenet_p' in D.list_datasets()
    frames, y = v[1]
    assert frames.shape == (6, 3, 32, 32) and y == 4
    assert (frames.mean((1, 2, 3)) * 255 - torch.tensor(LEVELS, dtype=torch.float)).abs().max() < 2   # qp=0: near-lossless
    assert D.imagenet_p(tmp_path, 'gaussian_noise', difficulty=2, strict=False).targets == [4]     # noise difficulty = folder
    with pytest.raises(FileNotFoundError, match=r'gaussian_noise_3 does not exist.*<wnid>/\*.mp4'): D.imagenet_p(tmp_path, 'gaussian_noise', 3)
    with pytest.raises(ValueError, match='class-count mismatch'): D.imagenet_p(tmp_path, 'rotate')
    with pytest.raises(KeyError, match='valid: gaussian_noise'): D.imagenet_p(tmp_path, 'fog')
    (tmp_path/'rotate'/w[4]/'v1.mp4').write_bytes(b'\0' * 100)
    with pytest.raises(OSError, match='could not decode video .*v1.mp4'): v[1]

def test_evaluate_imagenet_p_hand_computed(tmp_path, monkeypatch):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path/'cache'))
    from robust_nb import evaluate as E, metrics as M
    w = D.imagenet_wnids()
    for p in ('rotate', 'gaussian_noise'): _mp4(tmp_path/p/w[0]/'v.mp4', LEVELS)
    m = _Brightness()
    t = E.evaluate_imagenet_p(m, tmp_path, ['rotate', 'gaussian_noise'], strict=False, progress=False).set_index('perturbation')
    assert t.flip_prob['rotate'] == pytest.approx(2 / 5)            # consecutive frames: 0-0, 0-2, 2-2, 2-4, 4-4
    assert t.flip_prob['gaussian_noise'] == pytest.approx(4 / 5)    # noise: every frame against the first
    assert t.t5d['rotate'] == pytest.approx((0 + 6 + 0 + 10 + 0) / 5)
    t2 = E.evaluate_imagenet_p(m, tmp_path, ['rotate'], difficulty=2, strict=False, progress=False)
    assert t2.flip_prob[0] == 1                                     # stride 2: 0-2, 0-2, 2-4, 2-4
    assert M.mfr(dict(zip(t.index, t.flip_prob)), {'rotate': .4, 'gaussian_noise': .4}) == pytest.approx(150)
    cached = E.evaluate_imagenet_p(m, tmp_path, ['rotate', 'gaussian_noise'], strict=False, progress=False)
    assert cached.flip_prob.tolist() == t.flip_prob.tolist()
    assert len(list((tmp_path/'cache').rglob('P-videos-*.json'))) == 3   # rotate d1, d2, gaussian_noise

def test_linear_probe_on_a_transfer_split(tmp_path):
    "The paper's protocol end to end: standard splits of a fabricated Tiny-ImageNet -> frozen features -> linear probe."
    from robust_nb.baselines import transfer_probe
    t = _tiny(tmp_path)
    for w, v in (('n01', 20), ('n02', 230)):                     # separable by brightness: dark goldfish, bright sharks
        for i in range(4): Image.fromarray(np.full((64, 64, 3), v + i, np.uint8)).save(t/'train'/w/'images'/f'{w}_{i}.JPEG')
    for f, v in (('val_0', 228), ('val_1', 22), ('val_2', 225)): Image.fromarray(np.full((64, 64, 3), v, np.uint8)).save(t/'val'/'images'/f'{f}.JPEG')
    class Mean(torch.nn.Module):
        def __init__(self): super().__init__(); self.unused = torch.nn.Parameter(torch.zeros(1))   # transfer_probe needs a parameter
        def forward_features(self, x): return x.mean((2, 3))
        def forward_head(self, f, pre_logits=False): return f
    tr, te = D.transfer_splits('tiny_imagenet', tmp_path)
    p = transfer_probe(Mean(), tr, te, val_frac=.25, num_classes=len(tr.classes))
    assert p.accuracy == 1 and p.n_test == 3

def test_imagenet_suite_picks_up_stylized(tmp_path):
    w = D.imagenet_wnids()
    for k in (0, 9): _img(tmp_path/'val'/w[k]/'a.png'); _img(tmp_path/'stylized-imagenet'/w[k]/'a.png')
    s = D.imagenet_suite(tmp_path, strict=False)
    assert s.names == ['imagenet', 'stylized_imagenet'] and s['stylized_imagenet'].dataset.targets == [0, 9]
