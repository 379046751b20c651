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
    m, r = E.create(name), _record(name)
    assert not any(tmp_path.rglob('*.safetensors')), "create() trained or cached weights instead of using the shipped file"
    if name == 'vq':                                          # the VQ records reconstruction error, not accuracy
        size = r['config']['size']
        x, _ = render('photo', W.EVAL['n'], size=size, seed=W.EVAL['seed'], split=W.EVAL['split'])
        mse, psnr = W.reconstruction(m, x)
        assert mse == pytest.approx(r['reconstruction'][f'photo@{size}']['mse'], rel=1e-3, abs=1e-6)
        assert psnr == pytest.approx(r['reconstruction'][f'photo@{size}']['psnr'], abs=0.01)
        return
    m = W.classifier(name, m)
    x, y = render('photo', W.EVAL['n'], seed=W.EVAL['seed'], split=W.EVAL['split'])
    assert abs(W.accuracy(m, x, y) - r['accuracy']['photo']) <= 0.1

def test_zoo_roles_are_shipped():
    "Every model the quickstart needs from a cold cache ships, so a cold run trains none of them."
    assert {'clip', 'vit', 'resnet', 'teacher', 'vq', 'reference'} <= set(SHIPPED)
    assert set(_record('vq')['reconstruction']) >= {f'{d}@{s}' for d in ('photo', 'v2', 'sketch', 'rendition', 'hard') for s in (16, 32)}
    assert set(_record('reference')['accuracy']) >= {'photo', 'v2', 'sketch', 'rendition', 'hard', 'corruptions'}

def test_reconstruction_hand_computed():
    "MSE over all pixels and PSNR = 10 log10(1/MSE) for images in [0,1], on an identity-plus-offset 'VQ'."
    class Shift(torch.nn.Module):
        def forward(self, x): return x + 0.1
    mse, psnr = W.reconstruction(Shift(), torch.zeros(3, 3, 4, 4), bs=2)
    assert mse == pytest.approx(0.01) and psnr == pytest.approx(20.0)

@pytest.mark.skipif(not os.environ.get('ROBUST_NB_SLOW'), reason="set ROBUST_NB_SLOW=1 to re-train the teacher (about 25 min on 1 CPU thread)")
def test_retrained_teacher_matches_record(monkeypatch, tmp_path):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path))
    spec, c = E.MODELS['teacher'], E.resolve('teacher')
    torch.manual_seed(c['seed'])
    m = spec.train(spec.build(c), c, tmp_path, False).eval()
    x, y = render('photo', W.EVAL['n'], seed=W.EVAL['seed'], split=W.EVAL['split'])
    assert abs(W.accuracy(m, x, y) - _record('teacher')['accuracy']['photo']) <= 1.0

def test_zoo_errors_tool_reads_the_shipped_files(capsys):
    "tools/zoo_errors.py builds each model from its JSON record and loads its safetensors file: same predictions as create()."
    import zoo_errors as Z
    m = Z.load('teacher', None, None)
    x, _ = render('photo', 8, seed=0, split='test')
    with torch.no_grad(): assert torch.equal(Z.predict(m, x), E.create('teacher')(x).argmax(-1))
    Z.main(['vit', 'teacher', '--n', '16', '--split', 'val'])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('vit      photo/val') and 'corruptions' in out[0] and out[-1].startswith('wrong on photo/val: all 2 models')
    Z.main(['teacher', '--n', '16', '--per-corruption'])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-17].startswith('| corruption') and out[-15].startswith('| gaussian_noise | ') and out[-1].startswith('| jpeg_compression | ')

def test_zoo_errors_averages_severities(capsys):
    "--severities 1 5: each corruption's accuracy is the mean of its severity-1 and severity-5 accuracies (same images)."
    import zoo_errors as Z
    def table(*sev):
        Z.main(['teacher', '--n', '16', '--per-corruption', '--severities', *sev])
        rows = [l.split('|') for l in capsys.readouterr().out.splitlines() if l.startswith('| ') and 'corruption' not in l]
        return {r[1].strip(): float(r[2]) for r in rows}
    s1, s5, both = table('1'), table('5'), table('1', '5')
    assert len(both) == 15 and all(abs(both[c] - (s1[c] + s5[c]) / 2) <= 0.1 for c in both)
    assert any(s1[c] != s5[c] for c in both)                        # the severities really differ
    with pytest.raises(SystemExit): Z.main(['teacher', '--severities', '6'])

def test_hard_filtration_probe():
    "tools/hard_filtration.py: the filtering model scores 0 on the kept images, the kept count is its error count."
    import hard_filtration as H
    x, y = render('hard', 200, seed=0, split='test')
    wrong = int((H.predictions('reference', x) != y).sum())
    r = H.filtration(200, 'reference', ['reference', 'teacher'])
    assert r[None] == wrong > 0 and r['reference'][1] == 0.0 and r['reference'][0] == pytest.approx(100 * (200 - wrong) / 200)
    assert 0 <= r['teacher'][1] <= 100

def test_variant_from_scratch_trains_the_recipe(tmp_path, monkeypatch):
    "`embedded_weights.py --variant '{}' --from-scratch` evaluates the recipe's weights (trained now), never the shipped file."
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path))
    monkeypatch.setattr(W, 'EVAL', dict(W.EVAL, n=50))
    shipped = W.variant('reference', {})
    monkeypatch.setattr(E.MODELS['reference'], 'train', lambda m, c, folder, progress: m)    # the "recipe": no training at all
    scratch = W.variant('reference', {}, scratch=True)
    assert scratch['key'] == shipped['key'] and scratch['from_scratch'] and shipped['train_s'] is None
    assert (E.cache_path('reference')/'model.safetensors').exists()
    assert scratch['test']['photo'] < shipped['test']['photo'] - 30               # untrained, against the shipped 67%

def test_evaluate_counts_the_corrupted_images(monkeypatch):
    "`corruptions_correct` is the exact count behind the rounded corruption mean (two models compare to the image)."
    monkeypatch.setitem(W.EVAL, 'n', 20)
    torch.manual_seed(0)
    from robust_nb.models import small_cnn
    out = W.evaluate(small_cnn(10, width=4))
    assert isinstance(out['corruptions_correct'], int) and 0 <= out['corruptions_correct'] <= 15 * 20
    assert abs(100 * out['corruptions_correct'] / (15 * 20) - out['corruptions']) <= 0.005
