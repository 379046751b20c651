"The -C dataset builder: layout, exact resume after a kill, determinism, errors, console script."
import importlib.util, io, json, sys, threading, types
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from robust_nb import corrupt_dataset as CD
from robust_nb.cli import corrupt_main

NAMES = ['noise', 'bright']

def standin(x, name, severity, generator=None):
    "Registry-compatible stand-in for robust_nb.corruptions.corrupt (random and deterministic members)."
    if name == 'noise': return (x + 0.04*severity*torch.randn(x.shape, generator=generator, device=x.device)).clamp(0, 1)
    if name == 'bright': return (x + 0.1*severity).clamp(0, 1)
    raise KeyError(name)

class Counting:
    "Stand-in that counts calls and raises KeyboardInterrupt (a kill) after `limit` calls."
    def __init__(self, limit=None): self.calls, self.limit, self.lock = 0, limit, threading.Lock()
    def __call__(self, *a, **k):
        with self.lock:
            self.calls += 1
            if self.limit is not None and self.calls > self.limit: raise KeyboardInterrupt("simulated kill")
        return standin(*a, **k)

def src_tree(root, classes=('n01440764', 'n01443537', 'n01484850'), n=3, hw=(30, 44), seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root/c).mkdir(parents=True, exist_ok=True)
        for i in range(n): Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(root/c/f'img{i}.png')
    return root

def files(d): return {p.relative_to(d).as_posix(): p.read_bytes() for p in Path(d).rglob('*.jpg')}

KW = dict(corruptions=NAMES, severities=(1, 4), size=24, resize=28, valid_names=NAMES, show_progress=False)

def test_layout_and_bytes(tmp_path):
    src = src_tree(tmp_path/'src')
    st = CD.corrupt_folder(src, tmp_path/'c', corrupt_fn=standin, **KW)
    out = files(tmp_path/'c')
    assert st['written'] == len(out) == 3*3*2*2 and st['skipped'] == 0
    assert 'noise/4/n01484850/img2.jpg' in out
    with Image.open(io.BytesIO(out['noise/4/n01484850/img2.jpg'])) as im: assert im.size == (24, 24) and im.format == 'JPEG'
    # the bytes are exactly: prepare -> corrupt with the per-image generator -> JPEG quality 85
    x = CD.prepare(src/'n01484850'/'img2.png', 24, 28)
    g = torch.Generator().manual_seed(CD.image_seed(0, 'noise', 4, 'n01484850/img2.png'))
    assert out['noise/4/n01484850/img2.jpg'] == CD.encode_jpeg(standin(x, 'noise', 4, generator=g), 85)
    assert out['noise/4/n01484850/img2.jpg'] != CD.encode_jpeg(standin(x, 'noise', 4, generator=g), 85)  # generator consumed: differs
    man = json.loads((tmp_path/'c'/'noise'/'4'/'.complete.json').read_text())
    assert man['n'] == 9 and man['corruption'] == 'noise' and man['severity'] == 4
    # readable by the ImageNet-C loader with no resize
    from robust_nb.data import imagenet_c
    s = imagenet_c(tmp_path/'c', 'bright', 1, size=24, strict=False)
    assert len(s.dataset) == 9 and s.dataset[0][0].shape == (3, 24, 24) and sorted(set(s.dataset.targets)) == [0, 1, 2]

def test_prepare_resize_crop_border(tmp_path):
    p = tmp_path/'a.png'; a = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8); Image.fromarray(a).save(p)
    assert CD.prepare(p, 224, 256).shape == (1, 3, 224, 224)
    x = CD.prepare(p, None, None, border=2)
    assert torch.equal(x[0], torch.from_numpy(a[2:-2, 2:-2]).permute(2, 0, 1).float()/255)

def test_deterministic_and_seeded(tmp_path):
    src = src_tree(tmp_path/'src')
    CD.corrupt_folder(src, tmp_path/'a', corrupt_fn=standin, workers=1, chunk_size=100, **KW)
    CD.corrupt_folder(src, tmp_path/'b', corrupt_fn=standin, workers=3, chunk_size=1, **KW)
    CD.corrupt_folder(src, tmp_path/'p', corrupt_fn=standin, workers=2, executor='process', **KW)
    CD.corrupt_folder(src, tmp_path/'s', corrupt_fn=standin, seed=1, **KW)
    a, b, p, s = (files(tmp_path/d) for d in 'abps')
    assert a == b == p
    assert all(a[k] != s[k] for k in a if k.startswith('noise/')) and all(a[k] == s[k] for k in a if k.startswith('bright/'))

@pytest.mark.parametrize('limit,workers', [(0, 1), (7, 1), (13, 3), (35, 2)])
def test_resume_after_kill_is_exact(tmp_path, limit, workers):
    src = src_tree(tmp_path/'src')
    ref = CD.corrupt_folder(src, tmp_path/'ref', corrupt_fn=standin, **KW)
    with pytest.raises(KeyboardInterrupt, match="simulated kill"):
        CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=Counting(limit), workers=workers, chunk_size=2, **KW)
    partial = files(tmp_path/'run')
    assert len(partial) <= limit and not list((tmp_path/'run').rglob('.complete.json'))
    # a SIGKILL mid-write leaves a temporary file behind; it must be cleaned, never counted
    stray = tmp_path/'run'/'noise'/'1'/'n01440764'/'.img0.jpg.abc123.tmp'; stray.parent.mkdir(parents=True, exist_ok=True); stray.write_bytes(b'half')
    again = Counting()
    st = CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=again, workers=workers, **KW)
    assert again.calls == st['written'] == ref['written'] - len(partial) and st['skipped'] == len(partial)
    assert files(tmp_path/'run') == files(tmp_path/'ref')
    assert not list((tmp_path/'run').rglob('*.tmp'))

def test_subset_then_full_and_manifest_skip(tmp_path):
    src = src_tree(tmp_path/'src', classes=('n01440764',))
    CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=standin, **KW)
    src_tree(tmp_path/'src', classes=('n01440764', 'n01443537'))          # same first class (same seed), one class added
    c = Counting(); st = CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=c, **KW)
    assert c.calls == st['written'] == 3*2*2 and st['skipped'] == 3*2*2
    CD.corrupt_folder(src, tmp_path/'ref', corrupt_fn=standin, **KW)
    assert files(tmp_path/'run') == files(tmp_path/'ref')
    c = Counting(); st = CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=c, **KW)   # every cell has its manifest
    assert c.calls == 0 and st['written'] == 0 and st['skipped'] == 6*4
    (tmp_path/'run'/'bright'/'4'/'n01443537'/'img1.jpg').unlink()                   # trusted manifest: not noticed...
    assert CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=standin, **KW)['written'] == 0
    assert CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=standin, recheck=True, **KW)['written'] == 1   # ...unless rechecked
    assert files(tmp_path/'run') == files(tmp_path/'ref')

def test_errors(tmp_path):
    src = src_tree(tmp_path/'src', classes=('a',), n=1)
    kw = {**KW, 'corrupt_fn': standin}
    with pytest.raises(KeyError, match="unknown corruption.*'nosie'.*valid names: noise, bright"):
        CD.corrupt_folder(src, tmp_path/'x', **{**kw, 'corruptions': ['nosie']})
    for bad in (0, 6, 2.5):
        with pytest.raises(ValueError, match="1..5"): CD.corrupt_folder(src, tmp_path/'x', **{**kw, 'severities': (1, bad)})
    (tmp_path/'empty'/'cls').mkdir(parents=True)
    with pytest.raises(ValueError, match=f"no images .* found under {tmp_path/'empty'}"): CD.corrupt_folder(tmp_path/'empty', tmp_path/'x', **kw)
    with pytest.raises(FileNotFoundError, match="does not exist"): CD.corrupt_folder(tmp_path/'nope', tmp_path/'x', **kw)
    loose = tmp_path/'loose'; loose.mkdir(); Image.new('RGB', (8, 8)).save(loose/'x.png')
    with pytest.raises(ValueError, match="move them into"): CD.corrupt_folder(loose, tmp_path/'x', **kw)
    Image.new('RGB', (8, 8)).save(src/'a'/'img0.jpg')                      # img0.png and img0.jpg -> same output
    with pytest.raises(ValueError, match="would both be written as a/img0.jpg"): CD.corrupt_folder(src, tmp_path/'x', **kw)
    (src/'a'/'img0.jpg').unlink()
    CD.corrupt_folder(src, tmp_path/'y', **kw)
    with pytest.raises(ValueError, match="different settings.*'quality': \\(85, 90\\)"): CD.corrupt_folder(src, tmp_path/'y', **{**kw, 'quality': 90})
    with pytest.raises(ValueError, match="executor"): CD.corrupt_folder(src, tmp_path/'z', **{**kw, 'executor': 'gpu'})
    with pytest.raises(ValueError, match="executor='thread' with device='cuda'"):
        CD.corrupt_folder(src, tmp_path/'z', **{**kw, 'executor': 'process', 'device': 'cuda'})

@pytest.fixture
def real_or_standin(monkeypatch):
    "robust_nb.corruptions when it exists; else a module with its contract names wrapping the stand-in."
    if importlib.util.find_spec('robust_nb.corruptions') is None:
        names = ('gaussian_noise', 'fog')
        fake = types.SimpleNamespace(CORRUPTIONS=names, EXTRA_CORRUPTIONS=('saturate',),
                                     corrupt=lambda x, n, s, generator=None: standin(x, 'noise' if n.endswith('noise') else 'bright', s, generator))
        monkeypatch.setitem(sys.modules, 'robust_nb.corruptions', fake)
    from robust_nb import corruptions
    return corruptions

def test_default_is_real_corrupt_and_cli(tmp_path, real_or_standin, capsys):
    C = real_or_standin
    src = src_tree(tmp_path/'src', classes=('n01440764',), n=2, hw=(40, 40))
    with pytest.raises(KeyError, match="valid names: gaussian_noise"): CD.corrupt_folder(src, tmp_path/'x', ['gausian_noise'], (1,))
    assert corrupt_main([str(src), str(tmp_path/'cli'), '--corruptions', 'gaussian_noise,fog', '--severities', '2,5', '--size', '32',
                    '--resize', '36', '--workers', '2']) is None          # a console script's return value is its exit status
    assert 'wrote 8 files, 0 already done' in capsys.readouterr().out and len(files(tmp_path/'cli')) == 8
    out = files(tmp_path/'cli')
    x = CD.prepare(src/'n01440764'/'img1.png', 32, 36)
    g = torch.Generator().manual_seed(CD.image_seed(0, 'fog', 5, 'n01440764/img1.png'))
    assert out['fog/5/n01440764/img1.jpg'] == CD.encode_jpeg(C.corrupt(x, 'fog', 5, generator=g), 85)
    with pytest.raises(SystemExit) as e: corrupt_main([str(tmp_path/'nope'), str(tmp_path/'y'), '--corruptions', 'fog'])
    assert e.value.code == 2 and 'does not exist' in capsys.readouterr().err
    with pytest.raises(SystemExit): corrupt_main([str(src), str(tmp_path/'y'), '--severities', '0'])
    assert '1..5' in capsys.readouterr().err

def slow_standin(x, name, severity, generator=None):
    import time; time.sleep(0.03)
    return standin(x, name, severity, generator)

def test_sigkill_then_resume(tmp_path):
    "A real SIGKILL of a building process, then a resume: byte-identical to an uninterrupted build, nothing missing or extra."
    import os, signal, subprocess, time
    src = src_tree(tmp_path/'src', n=4)
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_corrupt_dataset import slow_standin, KW; "
            f"from robust_nb.corrupt_dataset import corrupt_folder; "
            f"corrupt_folder({str(src)!r}, {str(tmp_path/'run')!r}, corrupt_fn=slow_standin, workers=2, chunk_size=1, **KW)")
    proc = subprocess.Popen([sys.executable, '-c', code])
    try:
        t0 = time.time()
        while len(list((tmp_path/'run').rglob('*.jpg'))) < 6 and proc.poll() is None and time.time() - t0 < 120: time.sleep(0.01)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally: proc.wait()
    n_partial = len(list((tmp_path/'run').rglob('*.jpg')))
    assert 6 <= n_partial < 48
    st = CD.corrupt_folder(src, tmp_path/'run', corrupt_fn=standin, **KW)
    assert st['written'] + st['skipped'] == 48 and st['skipped'] == n_partial
    CD.corrupt_folder(src, tmp_path/'ref', corrupt_fn=standin, **KW)
    assert files(tmp_path/'run') == files(tmp_path/'ref')
    assert not list((tmp_path/'run').rglob('*.tmp'))

def test_classes_filter(tmp_path):
    src = src_tree(tmp_path/'src', classes=('a', 'b', 'c'), n=1)
    CD.corrupt_folder(src, tmp_path/'o', corrupt_fn=standin, classes=['c', 'a'], **KW)
    assert {Path(k).parent.name for k in files(tmp_path/'o')} == {'a', 'c'}
    with pytest.raises(FileNotFoundError, match="1 requested class folders are missing.*zebra"):
        CD.corrupt_folder(src, tmp_path/'o2', corrupt_fn=standin, classes=['a', 'zebra'], **KW)

def test_cli_objectnet_c_roundtrip(tmp_path, real_or_standin, capsys):
    "ObjectNet -> ObjectNet-C with the CLI, read back by data.objectnet_c_suite in ObjectNet's label space."
    from robust_nb.data import objectnet_c_suite, objectnet_classes
    src = src_tree(tmp_path/'objectnet', classes=('mug', 'wok', 'squeegee'), n=1, hw=(60, 70))
    corrupt_main([str(src), str(tmp_path/'onc'), '--objectnet', '--classes', 'mug,wok', '--corruptions', 'fog', '--severities', '2',
             '--size', '32', '--resize', '40'])
    assert sorted(files(tmp_path/'onc')) == ['fog/2/mug/img0.jpg', 'fog/2/wok/img0.jpg']
    assert json.loads((tmp_path/'onc'/CD.SETTINGS_FILE).read_text())['border'] == 2
    x = CD.prepare(src/'mug'/'img0.png', 32, 40, border=2)
    g = torch.Generator().manual_seed(CD.image_seed(0, 'fog', 2, 'mug/img0.png'))
    assert files(tmp_path/'onc')['fog/2/mug/img0.jpg'] == CD.encode_jpeg(real_or_standin.corrupt(x, 'fog', 2, generator=g), 85)
    s = objectnet_c_suite(tmp_path/'onc', severities=(2,), size=32, strict=False)
    assert s.names == ['fog-2'] and sorted(s['fog-2'].dataset.targets) == sorted(objectnet_classes().index(c) for c in ('mug', 'wok'))

def test_dst_inside_src_refused_before_any_write(tmp_path):
    src = src_tree(tmp_path/'src', classes=('a',), n=1)
    kw = {**KW, 'corrupt_fn': standin}
    with pytest.raises(ValueError, match="is the source folder.*contrast/1/contrast/1"): CD.corrupt_folder(src, src, **kw)
    with pytest.raises(ValueError, match="inside the source folder"): CD.corrupt_folder(src, src/'a'/'c', **kw)
    with pytest.raises(ValueError, match="inside the source folder"): CD.corrupt_folder(src, tmp_path/'src'/'..'/'src'/'out', **kw)
    with pytest.raises(ValueError, match="source folder .* is inside dst"): CD.corrupt_folder(src, tmp_path, **kw)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*')) == ['src', 'src/a', 'src/a/img0.png']
    CD.corrupt_folder(src, tmp_path/'src-c', **kw)                     # a sibling whose name starts like src is fine

def test_unreadable_image_named_before_any_work_or_skipped(tmp_path):
    src = src_tree(tmp_path/'src', classes=('a', 'b'), n=2)
    ok = (src/'b'/'img1.png').read_bytes()
    (src/'b'/'img1.png').write_bytes(ok[:len(ok) // 2])                # truncated copy
    (src/'a'/'img0.png').write_bytes(b'not an image')                 # not an image at all
    c = Counting()
    with pytest.raises(ValueError, match=r"2 of 4 images cannot be read: .*a/img0\.png \(Unidentified.*b/img1\.png \(OSError.*truncated.*skip_bad=True"):
        CD.corrupt_folder(src, tmp_path/'out', **{**KW, 'corrupt_fn': c})
    assert c.calls == 0 and not (tmp_path/'out').exists()             # nothing done, nothing created
    st = CD.corrupt_folder(src, tmp_path/'out', **{**KW, 'corrupt_fn': c}, skip_bad=True)
    assert [b['file'] for b in st['bad']] == ['a/img0.png', 'b/img1.png'] and st['images'] == 2 and st['written'] == 2*4
    man = json.loads((tmp_path/'out'/'noise'/'4'/'.complete.json').read_text())
    assert man['n'] == 2 and [b['file'] for b in man['skipped']] == ['a/img0.png', 'b/img1.png']
    assert sorted(files(tmp_path/'out')) == sorted(f"{c}/{s}/{f}" for c in NAMES for s in (1, 4) for f in ('a/img1.jpg', 'b/img0.jpg'))
    (src/'b'/'img1.png').write_bytes(ok)                               # repaired: the rerun corrupts it into every cell
    st = CD.corrupt_folder(src, tmp_path/'out', **{**KW, 'corrupt_fn': standin}, skip_bad=True)
    assert st['written'] == 4 and [b['file'] for b in st['bad']] == ['a/img0.png']
    (tmp_path/'src2'/'a').mkdir(parents=True); (tmp_path/'src2'/'a'/'x.png').write_bytes(b'')
    with pytest.raises(ValueError, match="none of the 1 images"):
        CD.corrupt_folder(tmp_path/'src2', tmp_path/'o2', **{**KW, 'corrupt_fn': standin, 'skip_bad': True})

def test_prepare_names_the_file(tmp_path):
    (tmp_path/'x.jpg').write_bytes(b'\xff\xd8\xff garbage')
    with pytest.raises(OSError, match=r"could not read image .*x\.jpg.*replace or delete it"): CD.prepare(tmp_path/'x.jpg')

def test_empty_class_folder_named_or_reported(tmp_path):
    src = src_tree(tmp_path/'src', classes=('a', 'c'), n=1); (src/'b').mkdir()
    with pytest.raises(ValueError, match=r"class folder .*src/b holds no images.*skip_empty=True"):
        CD.corrupt_folder(src, tmp_path/'out', **{**KW, 'corrupt_fn': standin})
    assert not (tmp_path/'out').exists()
    with pytest.warns(UserWarning, match=r"skipped 1 empty class folder\(s\): .*src/b"):
        st = CD.corrupt_folder(src, tmp_path/'out', **{**KW, 'corrupt_fn': standin}, skip_empty=True)
    assert st['images'] == 2
    with pytest.raises(ValueError, match="src/b holds no images"): CD.list_images(src, classes=['b', 'a'])
    assert CD.list_images(src, classes=['a']) == ['a/img0.png']         # not asked for: not an error
