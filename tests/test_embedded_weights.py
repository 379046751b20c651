"""The shipped embedded weights (robust_nb/assets/embedded): they load offline through `embedded.create`, match their
recorded hash, and reproduce their recorded accuracy; a slow test (ROBUST_NB_SLOW=1) re-trains one and compares."""
import hashlib, json, os, sys
from pathlib import Path
import pytest, torch
from robust_nb import embedded as E
from robust_nb.synthetic import render

sys.path.insert(0, str(Path(__file__).parents[1]/'tools'))
import embedded_weights as W

SHIPPED = sorted(p.stem for p in E.ASSETS.glob('*.json'))

def _record(name): return json.loads((E.ASSETS/f'{name}.json').read_text())

def test_weights_budget():
    total = sum(p.stat().st_size for p in E.ASSETS.glob('*.safetensors'))
    assert total <= 25e6, f"shipped weights take {total / 1e6:.1f} MB; the budget is 25 MB"

@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_file_matches_its_record(name):
    r, p = _record(name), E.ASSETS/f'{name}.safetensors'
    assert hashlib.sha256(p.read_bytes()).hexdigest() == r['sha256']
    assert r['config'] == E.resolve(name) and r['key'] == E.cache_key(name), "re-run tools/embedded_weights.py: the default config changed"
    assert E.weights_key(name).startswith('shipped-')          # create(name) uses the file, no training

@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_accuracy_reproduces(name, monkeypatch, tmp_path):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path))     # an empty cache: only the shipped file can serve create()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    m = W.classifier(name, E.create(name))
    x, y = render('photo', W.EVAL['n'], seed=W.EVAL['seed'], split=W.EVAL['split'])
    assert abs(W.accuracy(m, x, y) - _record(name)['accuracy']['photo']) <= 0.1

@pytest.mark.skipif(not os.environ.get('ROBUST_NB_SLOW'), reason="set ROBUST_NB_SLOW=1 to re-train the teacher (about 15 min on 1 CPU thread)")
def test_retrained_teacher_matches_record(monkeypatch, tmp_path):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path))
    spec, c = E.MODELS['teacher'], E.resolve('teacher')
    torch.manual_seed(c['seed'])
    m = spec.train(spec.build(c), c, tmp_path, False).eval()
    x, y = render('photo', W.EVAL['n'], seed=W.EVAL['seed'], split=W.EVAL['split'])
    assert abs(W.accuracy(m, x, y) - _record('teacher')['accuracy']['photo']) <= 1.0
