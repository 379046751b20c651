"DeepAugment EDSR/CAE: per-image determinism, output layout, resume after a kill, strict weight loading (random weights, tiny images)."
import json
import pytest, torch
from PIL import Image
import robust_nb.deepaugment as da
from robust_nb.deepaugment import EDSR, CAE, deepaugment_image, deepaugment_folder, load_deepaugment_weights, image_seed

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp('w'); torch.manual_seed(0)
    torch.save(EDSR().state_dict(), d/'edsr.pt'); torch.save(CAE().state_dict(), d/'cae.pt')
    return d

@pytest.fixture
def src(tmp_path):
    s = tmp_path/'src'; g = torch.Generator().manual_seed(0)
    for c in ('a', 'b'):
        (s/c).mkdir(parents=True)
        for i in range(3): Image.fromarray((torch.rand(16, 20, 3, generator=g) * 255).byte().numpy()).save(s/c/f'{i}.png')
    return s

def _files(d): return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob('*.jpg'))}

def _g(s): return torch.Generator().manual_seed(s)

@pytest.mark.parametrize('net', ['edsr', 'cae'])
def test_image_seed_determines_the_image(net):
    torch.manual_seed(0)     # some random CAEs output 0 everywhere (every seed alike): fix the network and the image
    m, x = (EDSR() if net == 'edsr' else CAE()).eval(), torch.rand(1, 3, 8 if net == 'edsr' else 16, 16)
    a, b = deepaugment_image(net, m, x, _g(5)), deepaugment_image(net, m, x, _g(5))
    assert torch.equal(a, b)
    outs = [deepaugment_image(net, m, x, _g(s)) for s in range(6)]
    assert len({o.sum().item() for o in outs}) == 6                  # other seeds, other perturbed networks
    assert a.min() >= 0 and a.max() <= 1 and a.shape[-1] == (64 if net == 'edsr' else 16)

def test_seed_is_per_image_not_per_run():
    "An image's seed depends on the run seed, the network and its path only (not on order or neighbours)."
    assert image_seed(0, 'deepaugment-edsr', 0, 'a/0.png') == image_seed(0, 'deepaugment-edsr', 0, 'a/0.png')
    assert len({image_seed(s, n, 0, k) for s in (0, 1) for n in ('deepaugment-edsr', 'deepaugment-cae') for k in ('a/0.png', 'a/1.png')}) == 8

@pytest.mark.parametrize('net,resize,size', [('edsr', 8, (40, 32)), ('cae', 16, (20, 16))])
def test_folder_layout(src, weights, tmp_path, net, resize, size):
    out = tmp_path/'out'
    st = deepaugment_folder(src, out, net, weights/f'{net}.pt', resize=resize, show_progress=False)
    assert (st['written'], st['skipped'], st['images']) == (6, 0, 6)
    assert sorted(_files(out)) == [f'{c}/{i}.jpg' for c in 'ab' for i in range(3)]
    with Image.open(out/'a/0.jpg') as im: assert im.size == size            # EDSR: 4x the resized image; CAE: same size
    done = json.loads((out/'.complete.json').read_text())
    assert done['n'] == 6 and done['net'] == net
    assert json.loads((out/da.SETTINGS_FILE).read_text())['net'] == net

def test_resume_after_kill_equals_uninterrupted(src, weights, tmp_path, monkeypatch):
    full, part = tmp_path/'full', tmp_path/'part'
    deepaugment_folder(src, full, 'edsr', weights/'edsr.pt', resize=8, seed=3, show_progress=False)
    calls, encode = [], da.encode_jpeg
    def dying(x, q):
        if len(calls) == 2: raise KeyboardInterrupt
        calls.append(1); return encode(x, q)
    monkeypatch.setattr(da, 'encode_jpeg', dying)
    with pytest.raises(KeyboardInterrupt):
        deepaugment_folder(src, part, 'edsr', weights/'edsr.pt', resize=8, seed=3, show_progress=False)
    monkeypatch.setattr(da, 'encode_jpeg', encode)
    n_done = len(_files(part))
    assert 2 <= n_done < 6 and not (part/'.complete.json').exists()
    (part/'a'/'.2.jpg.x1.tmp').write_bytes(b'half a file')                   # what a kill mid-write leaves
    st = deepaugment_folder(src, part, 'edsr', weights/'edsr.pt', resize=8, seed=3, show_progress=False)
    assert (st['written'], st['skipped']) == (6 - n_done, n_done)            # nothing lost, nothing done twice
    assert _files(part) == _files(full)
    assert not list(part.rglob('*.tmp'))

def test_workers_do_not_change_the_files(src, weights, tmp_path):
    a, b = tmp_path/'w1', tmp_path/'w3'
    deepaugment_folder(src, a, 'cae', weights/'cae.pt', resize=16, workers=1, show_progress=False)
    deepaugment_folder(src, b, 'cae', weights/'cae.pt', resize=16, workers=3, show_progress=False)
    assert _files(a) == _files(b) and len(_files(a)) == 6

def test_other_settings_are_refused(src, weights, tmp_path):
    out = tmp_path/'out'
    deepaugment_folder(src, out, 'edsr', weights/'edsr.pt', resize=8, show_progress=False)
    with pytest.raises(ValueError, match='different settings'):
        deepaugment_folder(src, out, 'edsr', weights/'edsr.pt', resize=8, seed=1, show_progress=False)
    torch.manual_seed(1); torch.save(EDSR().state_dict(), tmp_path/'other.pt')
    with pytest.raises(ValueError, match='weights_sha256'):
        deepaugment_folder(src, out, 'edsr', tmp_path/'other.pt', resize=8, show_progress=False)

def test_bad_weights_files(weights, tmp_path):
    with pytest.raises(ValueError, match=r'cae\.pt does not hold EDSR weights.*missing keys'):
        load_deepaugment_weights('edsr', weights/'cae.pt')
    (tmp_path/'cut.pt').write_bytes((weights/'edsr.pt').read_bytes()[:4096])
    with pytest.raises(ValueError, match=r'cut\.pt.*edsr_baseline_x4'): load_deepaugment_weights('edsr', tmp_path/'cut.pt')
    with pytest.raises(FileNotFoundError, match=r'missing\.pt'): load_deepaugment_weights('cae', tmp_path/'missing.pt')
    sd = EDSR(n_feats=32).state_dict(); torch.save(sd, tmp_path/'small.pt')
    with pytest.raises(ValueError, match='other shapes'): load_deepaugment_weights('edsr', tmp_path/'small.pt')
    torch.save({'module.' + k: v for k, v in CAE().state_dict().items()}, tmp_path/'dp.pt')   # DataParallel prefix
    assert isinstance(load_deepaugment_weights('cae', tmp_path/'dp.pt'), CAE)
    with pytest.raises(KeyError, match='valid: edsr, cae'): load_deepaugment_weights('srgan', weights/'edsr.pt')

def test_loaded_weights_are_used_and_never_edited(weights):
    m = load_deepaugment_weights('cae', weights/'cae.pt')
    before = {k: v.clone() for k, v in m.state_dict().items()}
    for s in range(12): deepaugment_image('cae', m, torch.rand(1, 3, 12, 12), _g(s))
    with pytest.raises(ValueError, match='at least 12 px'): deepaugment_image('cae', m, torch.rand(1, 3, 8, 8), _g(0))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in torch.load(weights/'cae.pt', weights_only=True).items())

def test_edsr_activation_ops_do_what_the_authors_code_does():
    from robust_nb.deepaugment import _edsr_pre, _edsr_body
    h = torch.randn(1, 64, 4, 4)
    out = _edsr_pre(h, 'channel_copy', _g(0))
    changed = [c for c in range(64) if not torch.equal(out[0, c], h[0, c])]
    assert 1 <= len(changed) <= 5 and all(any(torch.equal(out[0, c], h[0, k]) for k in range(64) if k != c) for c in changed)
    assert torch.equal(_edsr_pre(h, 'none', _g(0)), h)
    m = EDSR().eval()
    with torch.no_grad():
        r = _edsr_body(m.body, h, 'layer_skip', _g(1))                    # the last kept layer applied to h alone
        assert any(torch.equal(r, m.body[i](h)) for i in range(12, 17))
        torch.testing.assert_close(_edsr_body(m.body, h, 'negate', _g(0)), m.body[5:](-m.body[:5](h)))

def test_cae_code_is_binary_before_decoding(monkeypatch):
    m = CAE().eval(); seen = []
    monkeypatch.setattr(m, 'decode', lambda b: seen.append(b) or torch.zeros(1, 3, 16, 16))
    with torch.no_grad(): m(torch.rand(1, 3, 16, 16), 'none', _g(0)); m(torch.rand(1, 3, 16, 16), 'shift', _g(0))
    assert all(set(b.unique().tolist()) <= {-1., 1.} for b in seen)

def test_edsr_weight_draws_touch_only_residual_block_convs():
    sd = EDSR().state_dict()
    for s in range(30):
        w = da.edsr_perturb_weights(dict(sd), _g(s))
        changed = [k for k in sd if not torch.equal(w[k], sd[k])]
        assert all(k.startswith('body.') and '.body.' in k for k in changed), changed

# --- robust_nb_deepaugment (console script) ---
from robust_nb import cli as _cli

def test_deepaugment_cli_writes_resumes_and_names_bad_files(src, weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('ROBUST_NB_NO_PROGRESS', '1')
    out = tmp_path/'out'
    argv = [str(src), str(out), '--net', 'edsr', '--weights', str(weights/'edsr.pt'), '--resize', '8', '--device', 'cpu', '--min-free-gb', '0']
    _cli.deepaugment_main(argv)
    assert 'wrote 6 DeepAugment-EDSR images, 0 already done' in capsys.readouterr().out
    _cli.deepaugment_main(argv)
    assert 'wrote 0 DeepAugment-EDSR images, 6 already done' in capsys.readouterr().out
    assert len(_files(out)) == 6
    for bad, msg in ((weights/'cae.pt', 'does not hold EDSR weights'), (tmp_path/'nope.pt', 'nope.pt')):
        with pytest.raises(SystemExit) as e:
            _cli.deepaugment_main([str(src), str(tmp_path/'o2'), '--net', 'edsr', '--weights', str(bad), '--device', 'cpu', '--min-free-gb', '0'])
        assert e.value.code == 2
        err = [l for l in capsys.readouterr().err.splitlines() if l.strip() and not l.startswith('note:')]
        assert len(err) == 1 and err[0].startswith('robust_nb_deepaugment: error:') and msg in err[0], err

def test_weights_inside_a_training_checkpoint_are_read(tmp_path):
    "A {'state_dict': ...} container is unwrapped: the authors' CAE in one loads; a robust_nb teacher is named as not EDSR."
    from robust_nb.deepaugment import load_deepaugment_weights, DEEPAUGMENT_NETS
    from robust_nb.teacher import small_teacher
    m = DEEPAUGMENT_NETS['cae'].build()
    torch.save({'state_dict': m.state_dict(), 'epoch': 3}, tmp_path / 'cae.pt')
    got = load_deepaugment_weights('cae', tmp_path / 'cae.pt')
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in got.state_dict().items())
    torch.save({'state_dict': small_teacher(10).state_dict()}, tmp_path / 't.pt')
    with pytest.raises(ValueError, match=r't\.pt does not hold EDSR weights: \d+ missing keys'): load_deepaugment_weights('edsr', tmp_path / 't.pt')
