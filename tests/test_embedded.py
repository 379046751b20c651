"""The embedded model zoo: names, configs as data, whole-config cache keys, the cache, shipped weights, and a cached
quickstart re-run with a non-default (ViT) student."""
import os, pytest, torch
from robust_nb import embedded as E
from robust_nb.core import config_key

ZOO = ['clip', 'clip-web', 'foundation', 'reference', 'resnet', 'teacher', 'vit', 'vq']

def _changed(v):
    "A different value of the same kind as `v`."
    if isinstance(v, bool): return not v
    if isinstance(v, (int, float)): return v + 1
    if isinstance(v, str): return v + '-other'
    if isinstance(v, list): return v[:-1] if len(v) > 1 else v + v
    if isinstance(v, dict): return {**v, next(iter(v)): _changed(next(iter(v.values())))} if v else {'extra': 1}
    raise TypeError(type(v))

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('ROBUST_NB_NO_PROGRESS', '1')
    return tmp_path / 'cache'

def test_list_models():
    assert E.list_models() == ZOO
    for name in ZOO:
        c = E.MODELS[name].config
        assert isinstance(c['seed'], int) and 'size' in c, name    # every model says what data it was trained on (the teacher: seed 2)
        assert config_key(c) == config_key(dict(reversed(list(c.items()))))

def test_every_config_field_changes_the_cache_key():
    for name in ZOO:
        base, seen = E.cache_key(name), set()
        for k, v in E.MODELS[name].config.items():
            if isinstance(v, dict):                             # nested: change each inner field in turn
                variants = [{**v, kk: _changed(vv)} for kk, vv in v.items()] + [{**v, 'extra': 1}]
            else: variants = [_changed(v)]
            for w in variants:
                key = E.cache_key(name, **{k: w})
                assert key != base, (name, k, w)
                assert key not in seen, (name, k, w); seen.add(key)
        assert E.cache_path(name) != E.cache_path(name, seed=1)

def test_the_issue_s_cache_bugs_are_keys_now():
    # teacher: weight_decay and warmup were left out of the cache folder name; foundation: lr and fit kwargs
    for name, k in [('teacher', 'weight_decay'), ('teacher', 'warmup'), ('foundation', 'lr'), ('foundation', 'weight_decay'),
                    ('foundation', 'warmup'), ('vq', 'lr'), ('reference', 'lr')]:
        assert E.cache_key(name) != E.cache_key(name, **{k: E.MODELS[name].config[k] * 2 + 1e-4}), (name, k)

def test_unknown_name_and_field_list_the_valid_ones():
    with pytest.raises(KeyError, match="unknown embedded model 'clip-xl'; valid names: " + ', '.join(ZOO)):
        E.create('clip-xl')
    with pytest.raises(TypeError, match=r"unknown config field\(s\) \['epoch'\] for embedded model 'resnet'; valid: model, model_kw, num_classes"):
        E.create('resnet', pretrained=False, epoch=3)
    with pytest.raises(TypeError, match="valid: .*n_per_domain"): E.cache_key('foundation', n=3)

def test_untrained_architectures():
    x = torch.rand(2, 3, 32, 32)
    for name in ('resnet', 'vit', 'teacher', 'reference'):
        assert E.create(name, pretrained=False, num_classes=4).eval()(x).shape == (2, 4), name
    assert E.create('foundation', pretrained=False)(x[:, :, :16, :16]).shape == (2, 10)
    assert E.create('vq', pretrained=False)(x[:, :, :16, :16]).shape == (2, 3, 16, 16)

def test_cached_training_runs_once(cache, monkeypatch):
    cfg = dict(epochs=1, batch_size=10, n_per_domain=8)
    phi = E.create('foundation', **cfg)
    monkeypatch.setattr(E.MODELS['foundation'], 'train', lambda *a, **k: pytest.fail('retrained'))
    again = E.create('foundation', **cfg)
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(phi(x), again(x))
    assert (E.cache_path('foundation', **cfg) / 'config.json').exists()
    with pytest.raises(pytest.fail.Exception): E.create('foundation', **dict(cfg, lr=1e-3))   # another config: trains

def test_reference_normaliser_cached(cache, monkeypatch):
    kw = dict(size=16, n=12, corruptions=['gaussian_noise'], reference=dict(steps=3, batch_size=8), progress=False)
    norm = E.reference_normaliser(**kw)
    assert norm.name == 'embedded' and norm.corruptions == ['gaussian_noise'] and len(norm.errors['gaussian_noise']) == 5
    assert norm.info['reference']['steps'] == 3 and norm.info['size'] == 16
    monkeypatch.setattr(E.MODELS['reference'], 'train', lambda *a, **k: pytest.fail('retrained'))
    again = E.reference_normaliser(**kw)
    assert again.errors == norm.errors and again.clean_error == norm.clean_error
    with pytest.raises(pytest.fail.Exception): E.reference_normaliser(**dict(kw, reference=dict(steps=4)))
    from robust_nb.metrics import BASELINES                  # the deferred 'embedded' name resolves to this function
    assert BASELINES['embedded'] is E.reference_normaliser

def test_shipped_weights_used_only_for_their_config(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(E, 'ASSETS', tmp_path / 'assets')
    torch.manual_seed(1); m = E.create('reference', pretrained=False)
    E.save_weights(m, tmp_path / 'assets' / 'reference.safetensors', 'reference')
    monkeypatch.setattr(E.MODELS['reference'], 'train', lambda *a, **k: pytest.fail('trained'))
    got = E.create('reference')                               # the default config: the shipped file, no training
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), got.state_dict().values()))
    assert E.weights_info(tmp_path / 'assets' / 'reference.safetensors')['key'] == E.cache_key('reference')
    assert E.weights_key('reference').startswith('shipped-')            # derived caches tell shipped from local weights
    assert E.weights_key('reference', steps=7) == E.cache_key('reference', steps=7)
    with pytest.raises(pytest.fail.Exception): E.create('reference', steps=7)   # another config: not the shipped file

def test_cached_quickstart_rerun_with_a_vit_student(cache, tmp_path):
    from robust_nb.quickstart import quickstart
    tiny = dict(n_eval=4, corruptions=['gaussian_noise'], severities=(1,), n_tune=16, distill_epochs=1, dad_n=16,
                dad_epochs=1, student_model='vit', foundation_model='foundation', student=dict(n=16, epochs=1), teacher=dict(n=16, epochs=1, recipe='standard', recipe_kw={}),
                foundation=dict(n_per_domain=8, epochs=1), vq=dict(n=16, epochs=1), reference=dict(steps=2, n=16))
    first = quickstart(tmp_path / 'a', verbose=False, **tiny)
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob('*') if p.suffix in ('.pt', '.safetensors')}
    second = quickstart(tmp_path / 'b', verbose=False, **tiny)   # loads the ViT's APT and multi-head weights into ViTs
    assert stamps and stamps == {p: p.stat().st_mtime_ns for p in cache.rglob('*') if p.suffix in ('.pt', '.safetensors')}
    assert first['table'].equals(second['table'])
    assert type(second['models']['APT'].stages[0]).__name__ == 'ViTStem'


def test_clip_build_does_not_warn_of_random_weights(caplog):
    "open_clip logs 'No pretrained weights loaded … initialized randomly' when it builds our config; create() loads the weights next, so that line is dropped."
    import logging
    with caplog.at_level(logging.WARNING): E.create('clip', pretrained=False)
    assert not [r for r in caplog.records if 'initialized randomly' in r.getMessage()]

def test_clip_zeroshot_residual_stages_same_function():
    "Splitting the CLIP tower at residual branches changes the stages, not the classifier: same logits; heads can be one MLP branch."
    from robust_nb.embedded import clip_zeroshot, create
    from robust_nb.models import split_model
    clip = create('clip')
    whole, branches = clip_zeroshot(clip), clip_zeroshot(clip, residual_stages=True)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad(): assert torch.allclose(whole(x), branches(x), atol=1e-5)
    assert branches.kinds.count('mlp') == branches.n_blocks == whole.n_blocks == 4
    sp = split_model(branches, blocks=3)
    assert 0.15 < sp.head_frac < 0.3 and sp.head_blocks == 1            # one MLP branch: ≈ 1/5 of three tuned blocks
    assert split_model(whole, blocks=3).head_frac > 0.3

def test_from_scratch_never_uses_shipped_files():
    "Inside `from_scratch()` no shipped file is used (weights identity = cache key); the switch is restored, errors included."
    assert E.weights_key('reference').startswith('shipped-')
    with E.from_scratch():
        assert E.weights_key('reference') == E.cache_key('reference') and E._shipped('reference', E.resolve('reference')) is None
    with pytest.raises(RuntimeError), E.from_scratch(): raise RuntimeError('boom')
    assert E.weights_key('reference').startswith('shipped-')
