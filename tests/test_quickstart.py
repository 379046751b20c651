"""The quickstart end to end, at a tiny scale: every stage runs, every model is evaluated, the outputs keep what a reader
needs (summary rows, F_correct per shift, labelled tables), and a second run reuses every cached artifact instead of
retraining. `from_scratch` re-creates a zoo model instead of loading its shipped weights."""
import contextlib, io, json, os, pytest, torch
from robust_nb import embedded
from robust_nb.quickstart import quickstart, quickstart_config, zoo_config, _create, _weights_id

TINY = dict(n_eval=8, corruptions=['gaussian_noise'], severities=(1, 2, 3, 4, 5), n_tune=32, distill_epochs=1, dad_n=32,
            dad_epochs=1, student_model='resnet', foundation_model='foundation', student=dict(n=32, epochs=1),
            teacher=dict(n=32, epochs=1), foundation=dict(n_per_domain=16, epochs=1), vq=dict(n=32, epochs=1),
            reference=dict(steps=3, n=32))
MODELS = ['student (original)', 'teacher (small, robust)', 'multi-head (ours)', 'APT', 'teacher (foundation)',
          'small student (KD)', 'small student (DAD)']

def _weights(cache):
    "Modification times of every weights/tensor file in the cache (models, features, DAD shards, datasets)."
    return {p: p.stat().st_mtime_ns for p in cache.rglob('*') if p.suffix in ('.pt', '.safetensors')}

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path/'cache')); return tmp_path/'cache'

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    cache = tmp_path_factory.mktemp('cache')
    old = os.environ.get('ROBUST_NB_CACHE'); os.environ['ROBUST_NB_CACHE'] = str(cache)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out): first = quickstart(tmp_path_factory.mktemp('out1'), **TINY)
        stamps = _weights(cache)
        second = quickstart(tmp_path_factory.mktemp('out2'), verbose=False, device='cpu', **TINY)
        yield first, second, stamps, _weights(cache), out.getvalue()
    finally:
        if old is None: os.environ.pop('ROBUST_NB_CACHE')
        else: os.environ['ROBUST_NB_CACHE'] = old

def test_every_model_evaluated_on_every_shift(runs):
    first = runs[0]
    assert list(first['table'].index) == MODELS
    for col in ['photo', 'v2', 'sketch', 'rendition', 'hard', 'avg shifts']: assert first['table'][f'top-1 {col} (%)'].between(0, 100).all()
    assert any(c.startswith('mCE (%') for c in first['table'].columns)
    assert str(first['table']['params total'].dtype) == 'Int64'                      # counts are integers
    for f in first['report'].values(): assert f.exists() and f.stat().st_size > 0

def test_summary_csv_and_json_keep_what_readers_use(runs):
    first = runs[0]; out = first['report']['html'].parent
    rows = (out/'summary.csv').read_text().splitlines()
    names = [r.split(',')[0] for r in rows[1:]]
    for n in ['student (original)', 'multi-head (ours)', 'APT', 'small student (KD)', 'small student (DAD)']: assert n in names
    saved = json.loads((out/'quickstart.json').read_text())
    fc = saved['f_correct']                                          # F_correct per shift: photo, natural shifts, corruptions at severity 3
    assert {'photo', 'v2', 'sketch', 'rendition', 'hard'} <= set(fc) and any('gaussian_noise' in k for k in fc)
    assert all(0 <= v <= 1 for v in fc.values()) and fc == pytest.approx(first['f_correct'].to_dict())
    assert saved['models'] == dict(student='resnet', teacher='teacher', foundation='foundation', vq='vq', reference='reference')
    assert saved['split']['head_blocks'] >= 1 and 0 < saved['split']['head_frac'] < 1     # blocks=2: a real block in each head
    assert set(saved['stage_seconds']) == set(first['times']) and len(first['times']) == 6
    assert 'F_correct per shift' in first['report']['html'].read_text()

def test_stdout_tables_are_labelled(runs):
    text = runs[4]
    assert 'F_correct' in text and 'accuracy' in text.lower() and 'zoo models: student = resnet' in text
    params = text[text.index('params'):text.index('F_correct', text.index('params'))]   # the cost table
    assert '3862978.0' not in params and 'e+0' not in params                          # integer parameter counts

def test_second_run_reuses_the_cache(runs):
    first, second, before, after, _ = runs
    assert before and {p: t for p, t in after.items() if p in before} == before       # no tensor rewritten: nothing retrained
    assert first['table'].equals(second['table'])                                     # same numbers from cached models
    assert first['f_correct'].equals(second['f_correct'])
    o1, o2 = (r['report']['html'].parent for r in (first, second))
    assert (o1/'summary.csv').read_bytes() == (o2/'summary.csv').read_bytes()

def test_unknown_setting_is_refused(tmp_path):
    with pytest.raises(TypeError, match="unknown quickstart settings.*valid: size"): quickstart(tmp_path, epochs=3)

def test_unknown_zoo_model_is_refused_before_any_work(tmp_path):
    with pytest.raises(KeyError, match="valid names"): quickstart(tmp_path, student_model='alexnet')

def test_default_student_is_clip_when_the_zoo_has_it():
    c = quickstart_config()
    assert c['student_model'] == ('clip' if 'clip' in embedded.list_models() else 'resnet')
    assert zoo_config(c)['vq'][1] == embedded.resolve('vq')               # zoo defaults, so shipped weights apply

def test_from_scratch_ignores_shipped_weights(cache, tmp_path, monkeypatch):
    "A shipped file (here: untrained weights) is what `create` returns; `from_scratch` trains with the recipe instead."
    cfg = dict(steps=3, n=32)
    monkeypatch.setattr(embedded, 'ASSETS', tmp_path)
    torch.manual_seed(1); embedded.save_weights(embedded.create('reference', pretrained=False, **cfg), tmp_path/'reference.safetensors', 'reference', cfg)
    shipped = embedded.create('reference', **cfg).state_dict()
    scratch = _create('reference', embedded.resolve('reference', **cfg), scratch=True, progress=False).state_dict()
    assert any(not torch.equal(shipped[k], scratch[k]) for k in shipped)
    assert _weights_id('reference', cfg, False).startswith('shipped-')
    assert _weights_id('reference', cfg, True) == embedded.cache_key('reference', **cfg)   # derived caches keyed apart
    again = _create('reference', embedded.resolve('reference', **cfg), scratch=True, progress=False).state_dict()
    assert all(torch.equal(again[k], scratch[k]) for k in scratch)                          # cached, not retrained

def test_cli_forwards_from_scratch_device_student(tmp_path, monkeypatch):
    import robust_nb.quickstart as q
    from robust_nb.cli import quickstart_main
    seen = {}
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', os.environ.get('CUDA_VISIBLE_DEVICES', ''))   # --device cpu hides GPUs: restore after
    monkeypatch.setattr(q, 'quickstart', lambda out, **kw: seen.update(kw, out=out))
    quickstart_main(['--out', str(tmp_path/'o'), '--from-scratch', '--device', 'cpu', '--student', 'vit', '--blocks', '3', '--n-eval', '16'])
    assert seen['from_scratch'] is True and seen['device'] == 'cpu' and seen['student_model'] == 'vit' and seen['blocks'] == 3
    assert seen['n_eval'] == 16 and seen['out'] == str(tmp_path/'o')

def test_cli_unknown_student_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', os.environ.get('CUDA_VISIBLE_DEVICES', ''))
    from robust_nb.cli import quickstart_main
    with pytest.raises(SystemExit) as e: quickstart_main(['--out', str(tmp_path/'o'), '--student', 'alexnet', '--device', 'cpu'])
    assert e.value.code == 2 and 'valid names' in capsys.readouterr().err

def test_clip_student_and_foundation_teacher(cache, tmp_path):
    "The default roles: the CLIP model (zero-shot, prompt-ensembled) is the student and DAD's teacher, listed once; a rerun loads."
    if 'clip' not in embedded.list_models(): pytest.skip("the zoo has no clip model")
    stem = embedded.resolve('clip').get('stem')
    clip = dict(n=64, epochs=1, batch_size=32, **({'stem': {**stem, 'init': None}} if stem and 'init' in stem else {}))
    cfg = {**TINY, 'student_model': None, 'foundation_model': None, 'student': clip, 'foundation': clip}
    r = quickstart(tmp_path/'a', verbose=False, **cfg)
    assert r['zoo']['student'][0] == r['zoo']['foundation'][0] == 'clip'
    assert 'teacher (foundation)' not in r['table'].index and 'small student (DAD)' in r['table'].index   # one row for both roles
    assert r['split']['head_blocks'] == 1
    before = _weights(cache)
    again = quickstart(tmp_path/'b', verbose=False, **cfg)
    assert {p: t for p, t in _weights(cache).items() if p in before} == before and r['table'].equals(again['table'])
