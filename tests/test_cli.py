"robust_nb.cli: exit status, one-line errors, strict weight loading, locks, seeds, fast and complete --help, tiny end-to-end runs."
import json, os, re, subprocess, sys, time
from pathlib import Path
import pytest, torch
from robust_nb import cli
from robust_nb.core import safe_load, atomic_save, output_lock

SCRIPTS = dict(corrupt=cli.corrupt_main, teacher=cli.teacher_main, distill=cli.distill_main, dad_generate=cli.dad_generate_main,
               dad_train=cli.dad_train_main, baselines=cli.baselines_main, deepaugment=cli.deepaugment_main,
               eval=cli.eval_main, quickstart=cli.quickstart_main)
PARSERS = dict(corrupt=cli._corrupt_parser, teacher=cli._teacher_parser, distill=cli._distill_parser,
               dad_generate=cli._dad_generate_parser, dad_train=cli._dad_train_parser, baselines=cli._baselines_parser,
               deepaugment=cli._deepaugment_parser, eval=cli._eval_parser, quickstart=cli._quickstart_parser)

@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path):
    monkeypatch.setenv('ROBUST_NB_NO_PROGRESS', '1')
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path / 'cache'))

def user_error(capsys, f, argv) -> str:
    "Run console script `f`; assert exit status 2 and a one-line `robust_nb_<tool>: error: ...`; return that line."
    with pytest.raises(SystemExit) as e: f(argv)
    assert e.value.code == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip() and not l.startswith('note:')]
    assert len(err) == 1 and err[0].startswith('robust_nb_') and ': error: ' in err[0], err
    return err[0]

def test_settings_ini_registers_every_script_in_cli():
    import configparser
    c = configparser.ConfigParser(); c.read(Path(__file__).parents[1] / 'settings.ini')
    entries = dict(l.split('=') for l in c['DEFAULT']['console_scripts'].split())
    assert entries == {f'robust_nb_{k}': f'robust_nb.cli:{k}_main' for k in SCRIPTS}

def test_help_fast_and_complete():
    "Every --help works in a fresh process (timed, printed), shows defaults, describes every flag, and mentions CLIP and a layout."
    times = {}
    for name in SCRIPTS:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, '-m', 'robust_nb.cli', name, '--help'], capture_output=True, text=True, timeout=60)
        times[name] = time.perf_counter() - t0
        assert r.returncode == 0, r.stderr
        p = PARSERS[name]()
        undescribed = [a.option_strings or a.dest for a in p._actions if not a.help]
        assert not undescribed, (name, undescribed)
        assert '(default:' in r.stdout and 'examples:' in r.stdout
        assert 'imagenet' in r.stdout.lower()
    print('--help seconds:', {k: round(v, 2) for k, v in times.items()})
    mods = subprocess.run([sys.executable, '-c', "import sys, robust_nb.cli; print(sorted(m for m in ('torch', 'timm', 'open_clip') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=60).stdout.strip()
    assert mods == '[]'                                                     # lazy: --help imports no heavy library
    for name in ('teacher', 'distill', 'dad_generate', 'dad_train', 'eval'):
        assert 'clip:' in PARSERS[name]().format_help(), name
    assert 'ROOT/imagenet-c/<corruption>/<1..5>/<wnid>' in PARSERS['eval']().format_help()
    assert '/data/imagenet/train/n01440764/' in PARSERS['teacher']().format_help()

def test_help_names_match_the_registries():
    from robust_nb.teacher import RECIPES
    from robust_nb.dad import METHODS
    from robust_nb.multihead import VARIANTS
    from robust_nb.data import IMAGENET_LAYOUT
    assert (set(cli.RECIPE_NAMES), set(cli.METHOD_NAMES), set(cli.VARIANT_NAMES)) == (set(RECIPES), set(METHODS), set(VARIANTS))
    assert all(f'ROOT/{v}/' in cli.IMAGENET_SUITE_LAYOUT for v in IMAGENET_LAYOUT.values())

def test_dispatcher():
    with pytest.raises(SystemExit) as e: cli.main(['nope'])
    assert e.value.code == 2

def test_argparse_level_errors(capsys):
    for argv, msg in ([['s', 'd', '--severities', '2.5'], 'whole numbers 1..5'], [['s', 'd', '--size', '-5'], 'must be in 0..'],
                      [['s', 'd', '--severities', '0,6'], 'must be in 1..5']):
        with pytest.raises(SystemExit) as e: cli.corrupt_main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
    with pytest.raises(SystemExit): cli.teacher_main(['--severity', '11'])
    assert '1..10' in capsys.readouterr().err

def test_user_errors_are_one_line_with_exit_2(capsys, tmp_path):
    assert 'valid forms: embedded:<name>, timm:<name>[@weights_file], clip:<arch>[@checkpoint]' in \
        user_error(capsys, cli.eval_main, ['--model', 'resnet50', '--n', '4', '--out', str(tmp_path / 'o')])
    assert 'valid names: ' in user_error(capsys, cli.eval_main, ['--model', 'embedded:nope', '--n', '4', '--out', str(tmp_path / 'o')])
    assert "close names: ['test_resnet'" in user_error(capsys, cli.eval_main, ['--model', 'timm:test_resnt', '--n', '4', '--out', str(tmp_path / 'o')])
    assert 'does not exist' in user_error(capsys, cli.teacher_main, ['--data', '/does/not/exist', '--out', str(tmp_path / 't.pt')])
    assert "unknown teacher recipe 'nope'" in user_error(capsys, cli.teacher_main, ['--recipe', 'nope', '--out', str(tmp_path / 't.pt')])
    assert 'does not exist' in user_error(capsys, cli.corrupt_main, [str(tmp_path / 'nope'), str(tmp_path / 'y'), '--corruptions', 'fog'])
    assert 'weights file' in user_error(capsys, cli.eval_main, ['--model', f'timm:test_resnet@{tmp_path}/none.pt', '--n', '4', '--out', str(tmp_path / 'o')])
    assert 'GiB free' in user_error(capsys, cli.eval_main, ['--model', 'timm:test_resnet', '--min-free-gb', '1e9', '--out', str(tmp_path / 'o')])
    with pytest.raises(cli.CLIError): cli.eval_main(['--model', 'resnet50', '--debug', '--out', str(tmp_path / 'never')])
    assert not (tmp_path / 'never').exists()                              # --debug: the traceback; specs checked before any output is made

def test_subprocess_exit_status(tmp_path):
    "Through a real process, as a shell or a scheduler sees it: 2 and one line for a user error, 0 for success."
    r = subprocess.run([sys.executable, '-m', 'robust_nb.cli', 'eval', '--model', 'timm:nope', '--out', str(tmp_path / 'o')],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith('robust_nb_eval: error: --model timm:nope is not a timm model')
    assert 'Traceback' not in r.stderr
    src = tmp_path / 'src' / 'a'; src.mkdir(parents=True)
    from PIL import Image
    Image.new('RGB', (20, 20), (90, 40, 200)).save(src / 'i.png')
    r = subprocess.run([sys.executable, '-m', 'robust_nb.cli', 'corrupt', str(tmp_path / 'src'), str(tmp_path / 'dst'), '--corruptions', 'fog',
                        '--severities', '1', '--size', '16', '--resize', '18'], capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'ROBUST_NB_NO_PROGRESS': '1'})
    assert r.returncode == 0 and r.stderr == '' and 'wrote 1 files' in r.stdout

def _timm_file(path, name='test_resnet', num_classes=1000, robust_format=False):
    import timm
    from robust_nb.models import timm_classifier
    torch.manual_seed(0)
    sd = timm_classifier(name, num_classes).state_dict() if robust_format else timm.create_model(name, num_classes=num_classes).state_dict()
    torch.save({'state_dict': sd} if robust_format else sd, path)
    return path

def test_strict_classifier_mismatch(capsys, tmp_path):
    f = _timm_file(tmp_path / 'rn.pth')
    line = user_error(capsys, cli.eval_main, ['--model', f'timm:test_resnet@{f}', '--n', '4', '--out', str(tmp_path / 'o')])
    assert 'classifier fc.weight has shape (1000, ' in line and '(1000 classes) but 10 classes are needed' in line
    assert "use the file's 1000 classes" in line and '--new-head' in line
    g = _timm_file(tmp_path / 'rn_staged.pt', num_classes=3, robust_format=True)
    line = user_error(capsys, cli.distill_main, ['--student', f'timm:test_resnet@{g}', '--teacher', 'timm:test_resnet', '--out', str(tmp_path / 'd.pt')])
    assert '(3 classes) but 10 classes are needed' in line
    v = _timm_file(tmp_path / 'vit.pth', 'test_vit', 10)
    line = user_error(capsys, cli.eval_main, ['--model', f'timm:test_resnet@{v}', '--n', '4', '--out', str(tmp_path / 'o')])
    assert "does not fit timm model 'test_resnet': missing keys" in line and 'unexpected keys' in line
    # the ways out: the file's class count, or an explicit fresh head (never a silently random one)
    m = cli.resolve_model(f'timm:test_resnet@{f}')
    assert m.num_classes == 1000 and torch.equal(m.stages[-1].fc.weight.detach(), torch.load(f)['fc.weight'])
    m = cli.resolve_model(f'timm:test_resnet@{f}', 10, new_head=True)
    sd, ref = m.state_dict(), torch.load(f)
    assert m.num_classes == 10 and all(any(v.shape == w.shape and torch.equal(v, w) for w in sd.values()) for k, v in ref.items() if not k.startswith('fc.'))
    assert 'fresh 10-class head' in capsys.readouterr().err

def test_lock_refuses_a_second_writer(capsys, tmp_path):
    dst = tmp_path / 'dst'
    with output_lock(dst, 'robust_nb_corrupt'):
        line = user_error(capsys, cli.corrupt_main, [str(tmp_path), str(dst), '--corruptions', 'fog'])
    assert f'is being written by another run (robust_nb_corrupt, pid {os.getpid()} on ' in line
    with output_lock(dst): pass                                          # released when the holder ends

def _teacher_run(tmp_path, tag, seed):
    out = tmp_path / tag / 'teacher.pt'
    assert cli.teacher_main(['--recipe', 'standard', '--n', '32', '--size', '16', '--batch-size', '16', '--max-steps', '2',
                             '--seed', str(seed), '--out', str(out)]) is None
    return safe_load(out)['state_dict']

def test_teacher_same_seed_same_weights(tmp_path):
    a, b, c = _teacher_run(tmp_path, 'a', 0), _teacher_run(tmp_path, 'b', 0), _teacher_run(tmp_path, 'c', 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    cfg = json.loads((tmp_path / 'a' / 'teacher.pt.json').read_text())
    assert cfg['config']['seed'] == 0 and cfg['num_classes'] == 10

def test_teacher_image_folder(tmp_path, monkeypatch):
    from PIL import Image
    import robust_nb.engine as E
    g = torch.Generator().manual_seed(0)
    for c in ('a', 'b'):
        (tmp_path / 'imgs' / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(torch.randint(0, 256, (16, 16, 3), generator=g, dtype=torch.uint8).numpy()).save(tmp_path / 'imgs' / c / f'{i}.png')
    workers = []
    class DL(E.DataLoader):
        def __init__(self, *a, **k): workers.append(k.get('num_workers', 0)); super().__init__(*a, **k)
    monkeypatch.setattr(E, 'DataLoader', DL)
    out = tmp_path / 'run' / 'teacher.pt'
    cli.teacher_main(['--recipe', 'augmix', '--model', 'timm:test_resnet', '--data', str(tmp_path / 'imgs'), '--size', '16',
                      '--batch-size', '4', '--max-steps', '2', '--workers', '1', '--out', str(out)])
    d = safe_load(out)
    assert workers and set(workers) == {1} and d['severity'] == 1 and d['class_names'] == ['a', 'b']
    m = cli.resolve_model(f'timm:test_resnet@{out}', 2)                  # the output loads back through the vocabulary
    assert m.num_classes == 2

def _tiny_vq(path):
    from robust_nb.vqgan import VQDiscretiser, vq_model, save_vq
    torch.manual_seed(0)
    save_vq(VQDiscretiser(vq_model('tiny', block_out_channels=(8, 8, 8), norm_num_groups=4, num_vq_embeddings=16)), path)
    return path

def test_dad_generate_then_train(tmp_path, capsys):
    vq = _tiny_vq(tmp_path / 'vq.safetensors')
    torch.save({'x': torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8), 'y': torch.arange(10) % 3}, tmp_path / 'data.pt')
    common = ['--teacher', 'timm:test_resnet', '--data', str(tmp_path / 'data.pt')]
    assert cli.dad_generate_main(['--out', str(tmp_path / 'out'), '--vq', str(vq), '--chunk-size', '4', *common]) is None
    man = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert man['complete'] and man['n_in'] == 10 and len(man['shards']) == 3
    assert json.loads((tmp_path / 'out' / 'config.json').read_text())['lr'] == 0.1      # the paper's attack lr
    assert cli.dad_train_main(['--samples', str(tmp_path / 'out'), '--method', 'kd', '--student', 'timm:test_resnet', '--epochs', '1',
                               '--batch-size', '5', '--out', str(tmp_path / 's.pt'), *common]) is None
    d = safe_load(tmp_path / 's.pt')
    assert d['method'] == 'kd' and d['num_classes'] == 3
    # another teacher than the generation's (an unseeded-weights timm model drawn with another seed) is refused
    line = user_error(capsys, cli.dad_train_main, ['--samples', str(tmp_path / 'out'), '--method', 'kd', '--student', 'timm:test_resnet',
                                                   '--epochs', '1', '--seed', '1', '--out', str(tmp_path / 's1.pt'), *common])
    assert 'is not the teacher' in line and "pass the generation's --teacher" in line

def test_eval_embedded_and_checkpoint(tmp_path, capsys):
    from robust_nb.models import timm_classifier
    m = timm_classifier('test_resnet', 10)
    atomic_save({'model': m.state_dict()}, tmp_path / 'ck.pt')
    args = ['--n', '16', '--corruptions', 'fog', '--severities', '1,2', '--natural', 'v2', '--baseline', 'none', '--batch-size', '8']
    assert cli.eval_main(['--model', f'timm:test_resnet@{tmp_path}/ck.pt', '--out', str(tmp_path / 'o'), *args]) is None
    r = json.loads((tmp_path / 'o' / 'results.json').read_text())
    from robust_nb.evaluate import model_fingerprint
    info = next(iter(r.values()))['info']
    assert info['model_fingerprint'] == model_fingerprint(m)
    assert (tmp_path / 'o' / 'report.html').exists() and 'wrote' in capsys.readouterr().out

def test_distill_tiny(tmp_path):
    torch.manual_seed(0)
    torch.save({'x': torch.rand(16, 3, 32, 32), 'y': torch.arange(16) % 10}, tmp_path / 'd.pt')
    assert cli.distill_main(['--student', 'timm:test_resnet', '--teacher', 'timm:test_resnet', '--data', str(tmp_path / 'd.pt'),
                             '--n', '16', '--blocks', '2', '--epochs', '1', '--batch-size', '8', '--out', str(tmp_path / 'mh.pt')]) is None
    d = safe_load(tmp_path / 'mh.pt')
    assert d['variant'] == 'ours' and d['n_tuned'] > 0 and (tmp_path / 'mh.pt.json').exists()

def test_distill_and_rebuild_the_zoo_clip(tmp_path, monkeypatch):
    "embedded:clip is the zoo CLIP's zero-shot classifier in every script: the paper's main student, tuned and rebuilt."
    from robust_nb.synthetic import CLASSES
    monkeypatch.setenv('ROBUST_NB_NO_PROGRESS', '1')
    torch.manual_seed(0)
    torch.save({'x': torch.rand(16, 3, 32, 32), 'y': torch.arange(16) % 10}, tmp_path / 'd.pt')
    z = cli.resolve_model('embedded:clip', 10, list(CLASSES))
    assert cli.model_classes(z) == 10 and 'mlp' in z.kinds                  # before: "predicts 48 classes" (its text tower)
    assert cli.distill_main(['--student', 'embedded:clip', '--data', str(tmp_path / 'd.pt'), '--n', '16', '--epochs', '1',
                             '--batch-size', '8', '--out', str(tmp_path / 'mh.pt')]) is None
    d = safe_load(tmp_path / 'mh.pt')
    assert d['student'] == 'embedded:clip' and d['split'] == 'branches'
    m = cli.resolve_model(f'distilled:{tmp_path}/mh.pt', 10, list(CLASSES))
    sd = m.model.state_dict()
    assert sd.keys() == d['state_dict'].keys() and all(torch.equal(v, d['state_dict'][k]) for k, v in sd.items())
    assert m(torch.rand(4, 3, 32, 32)).shape == (4, 10)
    # a baseline tuned on it is a file of the zero-shot classifier: embedded:clip@<file> loads it back, every tensor
    assert cli.baselines_main(['--student', 'embedded:clip', '--method', 'apt', '--data', str(tmp_path / 'd.pt'), '--n', '16',
                               '--epochs', '1', '--batch-size', '8', '--out', str(tmp_path / 'apt.pt')]) is None
    a = cli.resolve_model(f'embedded:clip@{tmp_path}/apt.pt', 10, list(CLASSES))
    sd = cli.read_weights(tmp_path / 'apt.pt')
    assert a.state_dict().keys() == sd.keys() and all(torch.equal(v, sd[k]) for k, v in a.state_dict().items())

def _children(pid):
    "Pids whose parent is `pid` (Linux /proc)."
    out = []
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try: stat = (d / 'stat').read_text()
            except OSError: continue
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid: out.append(int(d.name))
    return out

def _alive(pid):
    try: return (Path('/proc') / str(pid) / 'stat').read_text().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except OSError: return False

@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux-only')
def test_process_workers_die_with_their_parent(tmp_path):
    "A -C build with --executor process, its parent SIGKILLed: no orphan worker keeps writing."
    import signal
    src = tmp_path / 'src' / 'a'; src.mkdir(parents=True)
    from PIL import Image
    for i in range(40): Image.new('RGB', (16, 16), (i * 5, 40, 200)).save(src / f'{i}.png')
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_corrupt_dataset import slow_standin; "
            f"from robust_nb.corrupt_dataset import corrupt_folder; "
            f"corrupt_folder({str(tmp_path / 'src')!r}, {str(tmp_path / 'dst')!r}, ['noise'], (1, 2, 3, 4, 5), size=16, resize=None, "
            f"corrupt_fn=slow_standin, valid_names=['noise'], workers=2, chunk_size=20, executor='process', show_progress=False)")
    proc = subprocess.Popen([sys.executable, '-c', code])
    try:
        t0 = time.time()
        jpgs = lambda: list((tmp_path / 'dst').rglob('*.jpg'))
        while not jpgs() and proc.poll() is None and time.time() - t0 < 60: time.sleep(0.02)
        kids = _children(proc.pid)
        assert proc.poll() is None and len(kids) >= 2, "the pool did not start"
        os.kill(proc.pid, signal.SIGKILL)
    finally: proc.wait()
    t0 = time.time()
    while any(_alive(k) for k in kids) and time.time() - t0 < 10: time.sleep(0.05)
    assert not any(_alive(k) for k in kids)
    # each worker had a 20-image x 5-severity chunk (3 s) in hand: an orphan would have finished it (>= 100 files each)
    assert len(jpgs()) < 100

def test_clip_specs(tmp_path, capsys):
    from robust_nb.synthetic import CLASSES
    m = cli.resolve_model('clip:robust_nb-tiny-clip', 10, list(CLASSES), head='zeroshot')
    assert m.num_classes == 10 and m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(cli.CLIError, match='zero-shot head from class names'): cli.resolve_model('clip:robust_nb-tiny-clip', 10, None, head='zeroshot')
    with pytest.raises(cli.CLIError, match='is not an open_clip model'): cli.resolve_model('clip:ViT-B-61', 10, list(CLASSES))
    torch.save({'visual.conv1.weight': torch.zeros(3)}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match=r'other\.pt does not fit open_clip robust_nb-tiny-clip: missing keys .*other shapes \[.visual\.conv1\.weight: file \(3,\) vs model'):
        cli.resolve_model(f'clip:robust_nb-tiny-clip@{tmp_path}/other.pt', 10, list(CLASSES), head='zeroshot')

def test_device_flag_everywhere(capsys):
    for name, p in PARSERS.items(): assert '--device' in p().format_help(), name
    assert 'not a torch device' in user_error(capsys, cli.quickstart_main, ['--device', 'tpu9'])

def _resume_run(tmp_path, monkeypatch, tag, extra, stop_after=None):
    "A tiny teacher run through the console script; `stop_after`: stop as if killed after that many steps (no final checkpoint)."
    import robust_nb.teacher as T
    out = tmp_path / tag / 'teacher.pt'
    args = ['--recipe', 'standard', '--size', '16', '--batch-size', '8', '--max-steps', '6', '--ckpt-every', '2', '--out', str(out), *extra]
    if stop_after:
        with monkeypatch.context() as m:
            fit = T.fit
            m.setattr(T, 'fit', lambda *a, **k: fit(*a, stop_after=stop_after, **k))
            cli.teacher_main(args)
        assert safe_load(out.parent / 'ckpt-teacher' / 'last.pt')['step'] == 2
    steps, recipe = [], T.RECIPES['standard']
    def counting(**kw):
        f = recipe(**kw)
        return lambda model, batch: (steps.append(1), f(model, batch))[1]
    with monkeypatch.context() as m:
        m.setitem(T.RECIPES, 'standard', counting)
        cli.teacher_main(args)
    assert len(steps) == (4 if stop_after else 6)                          # the rerun resumed at step 3
    return safe_load(out)['state_dict']

@pytest.mark.parametrize('data', ['embedded', 'folder'])
def test_teacher_kill_and_resume_is_exact(tmp_path, monkeypatch, data):
    "Stopped after 3 steps (checkpoint at 2), rerun with the same command: the same weights as one uninterrupted run."
    if data == 'folder':
        from PIL import Image
        g = torch.Generator().manual_seed(0)
        for c in ('a', 'b'):
            (tmp_path / 'imgs' / c).mkdir(parents=True)
            for i in range(12):
                Image.fromarray(torch.randint(0, 256, (20, 20, 3), generator=g, dtype=torch.uint8).numpy()).save(tmp_path / 'imgs' / c / f'{i}.png')
        extra = ['--data', str(tmp_path / 'imgs'), '--workers', '1']
    else: extra = ['--n', '48']
    ref = _resume_run(tmp_path, monkeypatch, 'ref', extra)
    res = _resume_run(tmp_path, monkeypatch, 'res', extra, stop_after=3)
    assert all(torch.equal(ref[k], res[k]) for k in ref)

def _folder(root, classes=('a', 'b'), n=6, size=20):
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy()).save(root / c / f'{i}.png')
    return root

def test_distill_streams_a_folder_and_resumes(tmp_path, monkeypatch, capsys):
    "An ImageFolder reaches multihead.distill as a Dataset (never read into memory), features go to <out>.features shards,"
    "a rerun resumes, other settings are refused naming them, and the output records config + results."
    import robust_nb.multihead as MH
    seen = []
    real = MH.distill
    monkeypatch.setattr(MH, 'distill', lambda st, te, data, **kw: (seen.append((data, kw)), real(st, te, data, **kw))[1])
    out = tmp_path / 'run' / 'mh.pt'
    args = ['--student', 'timm:test_resnet', '--teacher', 'timm:test_resnet', '--data', str(_folder(tmp_path / 'imgs')), '--size', '16',
            '--blocks', '1', '--batch-size', '4', '--max-steps', '2', '--cache-budget-gb', '0', '--out', str(out)]
    assert cli.distill_main(args) is None
    data, kw = seen[-1]
    assert isinstance(data, torch.utils.data.Dataset) and len(data) == 12
    assert kw['cache_path'] == Path(f'{out}.features') and any(Path(f'{out}.features').iterdir())
    assert kw['ckpt_dir'] == out.parent / 'ckpt-mh' and kw['num_workers'] == 0 and kw['max_steps'] == 2
    res = json.loads((tmp_path / 'run' / 'mh.pt.json').read_text())
    cfg = json.loads((out.parent / 'ckpt-mh' / 'config.json').read_text())
    assert res['num_classes'] == 2 and res['n_images'] == 12 and res['config']['blocks'] == 1 and cfg['settings']['lr'] == 1e-3
    assert safe_load(out)['class_names'] == ['a', 'b']
    assert cli.distill_main(args + ['--workers', '1']) is None            # same settings (workers may change): resumes
    line = user_error(capsys, cli.distill_main, args[:-2] + ['--lr', '0.01', '--batch-size', '2', '--out', str(out)])
    assert 'holds a robust_nb_distill run started with other settings' in line
    assert "--batch-size 4 then, 2 now" in line and "--lr 0.001 then, 0.01 now" in line and '--ckpt-dir' in line

def test_distill_class_count_mismatch(tmp_path, capsys):
    f = _timm_file(tmp_path / 'te.pth', num_classes=3)
    line = user_error(capsys, cli.distill_main, ['--student', 'timm:test_resnet', '--teacher', f'timm:test_resnet@{f}', '--data',
                                                 str(_folder(tmp_path / 'imgs', n=1)), '--size', '16', '--out', str(tmp_path / 'd.pt')])
    assert '(3 classes) but 2 classes are needed' in line and '--new-head' in line and 'data or --classes with 3 classes' in line
    st = cli.resolve_model('timm:test_resnet', 3)
    d = cli.Data(None, ['a', 'b'], ['a', 'b'])
    with pytest.raises(cli.CLIError, match=r'--teacher timm:x predicts 3 classes but the data has 2 \(classes: a, b\); use data with 3 classes'):
        cli._check_class_counts(d, 2, teacher=('timm:x', st))

def test_teacher_resume_with_other_settings_is_refused(tmp_path, capsys):
    args = ['--recipe', 'standard', '--n', '16', '--size', '16', '--batch-size', '8', '--max-steps', '1', '--out', str(tmp_path / 't.pt')]
    cli.teacher_main(args)
    line = user_error(capsys, cli.teacher_main, args + ['--seed', '3'])
    assert '--seed 0 then, 3 now' in line and 'robust_nb_teacher' in line

def _pt_data(path, n=16, size=32, classes=10):
    torch.manual_seed(0)
    torch.save({'x': torch.rand(n, 3, size, size), 'y': torch.arange(n) % classes}, path)
    return path

@pytest.mark.parametrize('method,student', [('apt', 'test_resnet'), ('wise_ft', 'test_resnet'), ('vpt', 'test_vit')])
def test_baselines_tiny(tmp_path, method, student):
    out = tmp_path / f'{method}.pt'
    args = ['--method', method, '--student', f'timm:{student}', '--data', str(_pt_data(tmp_path / 'd.pt')), '--blocks', '1',
            '--epochs', '1', '--batch-size', '8', '--alpha', '0.5', '--out', str(out)]
    assert cli.baselines_main(args) is None
    d, res = safe_load(out), json.loads(Path(f'{out}.json').read_text())
    assert d['method'] == method and d['num_classes'] == 10 and res['n_images'] == 16 and res['n_tuned'] > 0
    assert (tmp_path / f'ckpt-{method}' / 'config.json').exists() and (d['alpha'] == 0.5) == (method == 'wise_ft')
    from robust_nb.models import timm_classifier
    from robust_nb.baselines import vpt_model
    m = timm_classifier(student, 10)
    (vpt_model(m) if method == 'vpt' else m).load_state_dict(d['state_dict'])   # the student's architecture (+ prompts for VPT)
    assert cli.baselines_main(args) is None                                # a rerun resumes from the finished checkpoint

def test_baselines_vpt_needs_a_vit(tmp_path, capsys):
    line = user_error(capsys, cli.baselines_main, ['--method', 'vpt', '--student', 'timm:test_resnet', '--data',
                                                   str(_pt_data(tmp_path / 'd.pt')), '--out', str(tmp_path / 'v.pt')])
    assert '--method vpt needs a ViT student' in line and 'timm:test_resnet' in line and 'apt, linear_probe' in line

def test_eval_attacks_and_outputs(tmp_path, capsys):
    args = ['--model', 'timm:test_resnet', '--n', '8', '--corruptions', 'fog', '--severities', '1', '--natural', 'none',
            '--baseline', 'none', '--batch-size', '8', '--out', str(tmp_path / 'o')]
    assert cli.eval_main(args + ['--attack', 'fgsm,pgd', '--eps', '2/255', '--attack-steps', '2']) is None
    csv = (tmp_path / 'o' / 'results.csv').read_text()
    assert 'fgsm-eps2_255' in csv and 'pgd-eps2_255-steps2' in csv and 'fog' in csv      # the rest of the suite is still there
    assert 'unknown attack; valid: fgsm, pgd, autoattack' in user_error(capsys, cli.eval_main, args + ['--attack', 'cw'])
    with pytest.raises(SystemExit): cli.eval_main(args + ['--eps', 'x/255'])
    assert 'a fraction such as 4/255' in capsys.readouterr().err
    line = user_error(capsys, cli.eval_main, args + ['--outputs', 'probs', '--no-cache'])     # logits passed as probabilities
    assert 'robust_nb_eval: error:' in line

def test_corrupt_skip_bad(tmp_path, capsys):
    src = _folder(tmp_path / 'src', ('a',), n=2, size=16)
    (src / 'a' / 'broken.png').write_bytes(b'not an image')
    line = user_error(capsys, cli.corrupt_main, [str(src), str(tmp_path / 'dst'), '--corruptions', 'fog', '--severities', '1', '--size', '16', '--resize', '0'])
    assert 'broken.png' in line and 'skip them with --skip-bad' in line
    assert cli.corrupt_main([str(src), str(tmp_path / 'dst'), '--corruptions', 'fog', '--severities', '1', '--size', '16', '--resize', '0', '--skip-bad']) is None
    assert 'skipped 1 unreadable image(s)' in capsys.readouterr().out
    (src / 'empty').mkdir()
    assert 'pass --skip-empty' in user_error(capsys, cli.corrupt_main, [str(src), str(tmp_path / 'dst2'), '--corruptions', 'fog', '--severities', '1', '--size', '16', '--resize', '0', '--skip-bad'])
    assert cli.corrupt_main([str(src), str(tmp_path / 'dst2'), '--corruptions', 'fog', '--severities', '1', '--size', '16', '--resize', '0', '--skip-bad', '--skip-empty']) is None

def _distill_run(tmp_path, monkeypatch, tag, stop_after=None):
    import robust_nb.multihead as MH
    out = tmp_path / tag / 'mh.pt'
    args = ['--student', 'timm:test_resnet', '--teacher', 'timm:test_resnet', '--data', str(tmp_path / 'imgs'), '--size', '16',
            '--blocks', '2', '--batch-size', '4', '--max-steps', '5', '--ckpt-every', '2', '--cache-budget-gb', '0', '--out', str(out)]
    if stop_after:
        with monkeypatch.context() as m:
            fit = MH.fit
            m.setattr(MH, 'fit', lambda *a, **k: fit(*a, stop_after=stop_after, **k))
            cli.distill_main(args)
        assert safe_load(out.parent / 'ckpt-mh' / 'last.pt')['step'] == 2
    steps, fit = [], MH.fit
    with monkeypatch.context() as m:
        m.setattr(MH, 'fit', lambda model, loss, data, **k: fit(model, lambda mm, b: (steps.append(1), loss(mm, b))[1], data, **k))
        cli.distill_main(args)
    assert len(steps) == (3 if stop_after else 5)                            # the rerun resumed at step 3
    return safe_load(out)['state_dict']

def test_distill_kill_and_resume_is_exact(tmp_path, monkeypatch):
    "Stopped after 3 steps (checkpoint at 2, feature shards written), rerun with the same command: the weights of one uninterrupted run."
    _folder(tmp_path / 'imgs')
    ref, res = _distill_run(tmp_path, monkeypatch, 'ref'), _distill_run(tmp_path, monkeypatch, 'res', stop_after=3)
    assert ref.keys() == res.keys() and all(torch.equal(ref[k], res[k]) for k in ref)

def test_folder_not_imagenet_shaped(tmp_path, capsys):
    line = user_error(capsys, cli.distill_main, ['--data', str(_folder(tmp_path / 'imgs', n=1)), '--classes', 'imagenet',
                                                 '--student', 'timm:test_resnet', '--teacher', 'timm:test_resnet', '--out', str(tmp_path / 'd.pt')])
    assert 'is not laid out as --classes imagenet expects: 1000 of 1000 class folders missing' in line
    assert "it has 2 folders, e.g. ['a', 'b']" in line and '<root>/n01440764/n01440764_10026.JPEG' in line and 'drop --classes' in line

def test_eval_reads_a_distilled_checkpoint(tmp_path, capsys):
    "robust_nb_distill's output evaluates as distilled:<file>: the student's architecture rebuilt, every weight from the file, eq. 6 selection."
    from robust_nb.multihead import RULES, Selected
    data = _pt_data(tmp_path / 'd.pt')
    for extra, tag in ((['--blocks', '2'], 'b'), (['--frac', '0.5'], 'f'), (['--split', 'blocks'], 'w')):
        out = tmp_path / f'mh_{tag}.pt'
        cli.distill_main(['--student', 'timm:test_resnet', '--teacher', 'timm:test_resnet', '--data', str(data), *extra, '--max-steps', '1',
                          '--batch-size', '8', '--out', str(out)])
        m = cli.resolve_model(f'distilled:{out}', 10)
        saved = safe_load(out)['state_dict']
        assert isinstance(m, Selected) and m.model.state_dict().keys() == saved.keys()
        assert all(torch.equal(v, saved[k]) for k, v in m.model.state_dict().items())
        assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert set(cli._eval_parser()._option_string_actions['--rule'].choices) == set(RULES)
    assert cli.eval_main(['--model', f'distilled:{out}', '--rule', 'clean', '--n', '8', '--corruptions', 'fog', '--severities', '1',
                          '--natural', 'none', '--baseline', 'none', '--batch-size', '8', '--out', str(tmp_path / 'o')]) is None
    assert 'wrote' in capsys.readouterr().out
    with pytest.raises(cli.CLIError, match='predicts 10 classes but the data has 3; evaluate it on data with its 10 classes'):
        cli.resolve_model(f'distilled:{out}', 3)
    line = user_error(capsys, cli.eval_main, ['--model', f'distilled:{data}', '--n', '8', '--out', str(tmp_path / 'o2')])
    assert 'is not a robust_nb_distill output' in line

def test_distill_split_default_and_old_checkpoints(tmp_path, capsys):
    "Default: the last 2 blocks, cut at residual branches (each head the last conv); --split blocks keeps whole blocks; "
    "a checkpoint written before --split (no 'split' key) rebuilds with the library's staging."
    data = _pt_data(tmp_path / 'd.pt')
    common = ['--student', 'timm:test_resnet', '--teacher', 'timm:test_resnet', '--data', str(data), '--max-steps', '1', '--batch-size', '8']
    cli.distill_main([*common, '--out', str(tmp_path / 'br.pt')])
    info = json.loads((tmp_path / 'br.pt.json').read_text())
    assert (info['blocks'], info['split_frac'], info['split']) == (2, None, 'branches')
    br = cli.resolve_model(f"distilled:{tmp_path / 'br.pt'}", 10).model
    assert type(br.heads[0][0]).__name__ == 'BranchOut' and br.head_blocks == 1           # head = block's last conv + pool + fc
    cli.distill_main([*common, '--split', 'blocks', '--out', str(tmp_path / 'wb.pt')])
    wb = cli.resolve_model(f"distilled:{tmp_path / 'wb.pt'}", 10).model
    assert type(wb.heads[0][0]).__name__ == 'BasicBlock' and wb.n_tuned == br.n_tuned       # same layers tuned, staged otherwise
    ck = safe_load(tmp_path / 'wb.pt'); del ck['split']; torch.save(ck, tmp_path / 'old.pt')
    assert cli.resolve_model(f"distilled:{tmp_path / 'old.pt'}", 10).model.state_dict().keys() == wb.state_dict().keys()
    line = user_error(capsys, cli.distill_main, ['--student', 'embedded:vit', '--split', 'blocks', '--n', '8', '--max-steps', '1',
                                                 '--out', str(tmp_path / 'v.pt')])
    assert 'comes staged at its residual branches' in line and '--split branches' in line

def test_dad_generate_preset_and_overrides(tmp_path, capsys):
    "--preset picks the attack (dad.ATTACK_PRESETS); explicit --eps/--norm/--steps/--lr override it; config.json records both; resume with others refused."
    from robust_nb.dad import ATTACK_PRESETS, DEFAULT_PRESET
    assert set(cli.PRESET_NAMES) == set(ATTACK_PRESETS)
    vq = _tiny_vq(tmp_path / 'vq.safetensors')
    torch.save({'x': torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8), 'y': torch.arange(6) % 3}, tmp_path / 'data.pt')
    common = ['--teacher', 'timm:test_resnet', '--data', str(tmp_path / 'data.pt'), '--vq', str(vq), '--chunk-size', '6']
    cfg = lambda d: json.loads((tmp_path / d / 'config.json').read_text())
    assert cli.dad_generate_main(['--out', str(tmp_path / 'p'), '--preset', 'paper', '--eps', '0.05', *common]) is None
    c = cfg('p')
    assert (c['preset'], c['norm'], c['eps'], c['lr'], c['steps'], c['start'], c['criterion']) == ('paper', 'l2', 0.05, 0.1, 1, 'x', 'ce')
    out = capsys.readouterr().out
    assert 'attack preset paper' in out and 'eps=0.05 (set)' in out and 'lr=0.1,' in out
    assert cli.dad_generate_main(['--out', str(tmp_path / 'a'), '--preset', 'authors', *common]) is None
    c = cfg('a')
    assert (c['preset'], c['norm'], c['eps'], c['lr'], c['start'], c['random_start'], c['criterion']) == ('authors', 'l2', 0.1, 0.01, 'q', 0.8, 'kd')
    assert cli.dad_generate_main(['--out', str(tmp_path / 'd'), *common]) is None
    assert cfg('d') == {**cfg('d'), 'preset': DEFAULT_PRESET, **{k: v for k, v in ATTACK_PRESETS[DEFAULT_PRESET].items()}}
    capsys.readouterr()
    err = user_error(capsys, cli.dad_generate_main, ['--out', str(tmp_path / 'p'), '--preset', 'paper', *common])   # eps 0.1 now
    assert 'other settings' in err and "'eps': (0.05, 0.1)" in err

def test_bad_data_files_are_one_line_errors(tmp_path, capsys):
    "A --data .pt file is checked before any work: every problem is one line naming it (was: tracebacks, silent truncation)."
    x = torch.rand(8, 3, 16, 16)
    cases = {'text': None, 'empty': dict(x=x[:0], y=torch.zeros(0, dtype=torch.long)),
             'list': dict(x=x.tolist(), y=torch.arange(8) % 2), 'float_y': dict(x=x, y=torch.rand(8)),
             'long_y': dict(x=x, y=torch.arange(11) % 2), 'neg_y': dict(x=x, y=torch.arange(8) - 1),
             'range': dict(x=x * 255, y=torch.arange(8) % 2), 'names': dict(x=x, y=torch.arange(8), class_names=['a', 'b'])}
    want = {'text': 'is not a readable data file', 'empty': 'holds no images', 'list': "'x' must be a torch.Tensor of shape [B,3,H,W], got list",
            'float_y': "'y' must hold integer class indices, got torch.float32", 'long_y': "'y' has 11 labels but there are 8 images",
            'neg_y': 'class indices >= 0, got -1', 'range': 'looks like 0-255: divide by 255', 'names': "'y' holds class index 7 but there are 2 classes"}
    for k, d in cases.items():
        f = tmp_path / f'{k}.pt'
        if d is None: f.write_text('not a checkpoint')
        else: torch.save(d, f)
        with pytest.raises(cli.CLIError, match=re.escape(want[k])): cli.resolve_data(str(f))
    xu, yu = cli.check_tensor_data((x * 255).round().to(torch.uint8), torch.arange(8, dtype=torch.int32))
    assert xu.dtype == torch.float32 and 0 <= xu.min() and xu.max() <= 1 and yu.dtype == torch.int64
    with pytest.raises(cli.CLIError, match='is not a readable robust_nb_distill output'):
        cli.resolve_model(f'distilled:{tmp_path}/text.pt', 10)

def test_a_run_that_saved_nothing_blocks_no_rerun(tmp_path):
    "check_resume: a checkpoint folder holding only config.json and the lock (a run refused before any work) is no run."
    import argparse
    ck = tmp_path / 'ck'
    cli.check_resume(ck, argparse.Namespace(model='embedded:nope', n=1), 'robust_nb_teacher')
    (ck / '.robust_nb.lock').touch()
    cli.check_resume(ck, argparse.Namespace(model='embedded:teacher', n=1), 'robust_nb_teacher')     # not refused
    (ck / 'step.pt').touch()
    with pytest.raises(cli.CLIError, match="--model 'embedded:teacher' then, 'embedded:resnet' now"):
        cli.check_resume(ck, argparse.Namespace(model='embedded:resnet', n=1), 'robust_nb_teacher')

def test_frac_one_and_a_padding_crop_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit): cli._distill_parser().parse_args(['--frac', '1'])
    assert 'must be in (0, 1), got 1' in capsys.readouterr().err
    (tmp_path / 'src' / 'a').mkdir(parents=True)
    line = user_error(capsys, cli.corrupt_main, [str(tmp_path / 'src'), str(tmp_path / 'dst'), '--size', '64', '--resize', '36'])
    assert '--size 64 is larger than --resize 36' in line

def test_specs_of_the_wrong_kind_say_which_kind(tmp_path):
    with pytest.raises(cli.CLIError, match='--vq embedded:teacher is not a discretiser; pass embedded:vq'): cli.resolve_vq('embedded:teacher')
    torch.save({'x': torch.rand(16, 3, 32, 32), 'y': torch.arange(16) % 10}, tmp_path / 'd.pt')
    assert cli.distill_main(['--student', 'timm:test_resnet', '--teacher', 'timm:test_resnet', '--data', str(tmp_path / 'd.pt'),
                             '--n', '16', '--blocks', '2', '--epochs', '1', '--batch-size', '8', '--out', str(tmp_path / 'mh.pt')]) is None
    with pytest.raises(ValueError, match=f'is a robust_nb_distill output .*; load it as distilled:{tmp_path}/mh.pt'):
        cli.resolve_model(f'timm:test_resnet@{tmp_path}/mh.pt', 10)
    with pytest.raises(ValueError, match='is a robust_nb_distill output'): cli.resolve_model(f'embedded:teacher@{tmp_path}/mh.pt', 10)

def test_a_border_that_leaves_nothing_is_refused(tmp_path):
    from PIL import Image
    from robust_nb.corrupt_dataset import prepare
    Image.new('RGB', (40, 30), (10, 20, 30)).save(tmp_path / 'a.png')
    assert prepare(tmp_path / 'a.png', size=None, resize=None, border=14).shape == (1, 3, 2, 12)
    with pytest.raises(ValueError, match=r'border 15 px per side leaves nothing of .*a\.png \(40x30\); use a border below 14'):
        prepare(tmp_path / 'a.png', size=None, resize=None, border=15)

def test_flags_of_another_method_are_noted_not_silently_ignored(tmp_path, capsys):
    torch.save({'x': torch.rand(8, 3, 32, 32), 'y': torch.arange(8) % 10}, tmp_path / 'd.pt')
    assert cli.baselines_main(['--student', 'timm:test_resnet', '--method', 'apt', '--alpha', '0.3', '--data', str(tmp_path / 'd.pt'),
                               '--epochs', '1', '--batch-size', '8', '--out', str(tmp_path / 'b.pt')]) is None
    assert 'note: --alpha is for --method wise_ft; ignored by --method apt' in capsys.readouterr().err

def test_an_empty_name_list_is_refused(capsys):
    with pytest.raises(SystemExit): cli._eval_parser().parse_args(['--model', 'embedded:resnet', '--corruptions', ''])
    assert "expected one or more comma-separated names, got '' (omit the flag for the default)" in capsys.readouterr().err
