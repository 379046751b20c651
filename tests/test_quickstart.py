"""The quickstart end to end, at a tiny scale: every stage runs, every model is evaluated, and a second run reuses
every cached artifact instead of retraining."""
import json, pytest, torch
from robust_nb.quickstart import quickstart, QUICKSTART

TINY = dict(n_eval=8, corruptions=['gaussian_noise'], severities=(1, 2, 3, 4, 5), n_tune=32, distill_epochs=1, dad_n=32,
            dad_size=16, dad_epochs=1, student=dict(n=32, epochs=1), teacher=dict(n=32, epochs=1),
            foundation=dict(n_per_domain=16, epochs=1), vq=dict(n=32, epochs=1), reference=dict(steps=3, n=32))
MODELS = ['student (original)', 'teacher (small, robust)', 'multi-head (ours)', 'APT', 'teacher (foundation-like)',
          'small student (KD)', 'small student (DAD)']

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    import os
    cache = tmp_path_factory.mktemp('cache')
    old = os.environ.get('ROBUST_NB_CACHE'); os.environ['ROBUST_NB_CACHE'] = str(cache)
    try:
        first = quickstart(tmp_path_factory.mktemp('out1'), verbose=False, **TINY)
        stamps = {p: p.stat().st_mtime_ns for p in cache.rglob('*.pt')}
        second = quickstart(tmp_path_factory.mktemp('out2'), verbose=False, **TINY)
        yield first, second, stamps, {p: p.stat().st_mtime_ns for p in cache.rglob('*.pt')}
    finally:
        if old is None: os.environ.pop('ROBUST_NB_CACHE')
        else: os.environ['ROBUST_NB_CACHE'] = old

def test_every_model_evaluated_on_every_shift(runs):
    first = runs[0]
    assert list(first['table'].index) == MODELS
    for col in ['photo', 'v2', 'sketch', 'rendition', 'hard', 'avg shifts']: assert first['table'][f'top-1 {col} (%)'].between(0, 100).all()
    assert any(c.startswith('mCE (%') for c in first['table'].columns)
    assert str(first['table']['params total'].dtype) == 'Int64'                      # counts print as integers
    assert 'F_correct per shift' in first['report']['html'].read_text()
    assert first['f_correct'].between(0, 1).all() and 'photo' in first['f_correct'].index
    for f in first['report'].values(): assert f.exists() and f.stat().st_size > 0
    saved = json.loads((first['report']['html'].parent / 'quickstart.json').read_text())
    assert set(saved['stage_seconds']) == set(first['times']) and len(first['times']) == 6

def test_second_run_reuses_the_cache(runs):
    first, second, before, after = runs
    assert before and before == after                      # no checkpoint rewritten: nothing retrained
    assert first['table'].equals(second['table'])          # same numbers from the cached models and evaluations

def test_unknown_setting_is_refused(tmp_path):
    with pytest.raises(TypeError, match="unknown quickstart settings.*valid: size"): quickstart(tmp_path, epochs=3)
