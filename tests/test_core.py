import os, torch, pytest
from robust_nb.core import check_images, Registry, atomic_save, safe_load, atomic_write_json, make_generator, cache_dir

def test_check_images_accepts_valid_and_rejects_common_mistakes():
    x = torch.rand(2, 3, 5, 7)
    assert check_images(x) is x
    for bad, msg in [(torch.rand(3, 5, 5), "x[None]"), (torch.rand(2, 5, 5, 3), "permute"),
                     (torch.rand(2, 1, 5, 5), "expand"), (torch.zeros(2, 3, 5, 5, dtype=torch.uint8), "float"),
                     (torch.rand(2, 3, 5, 5) * 255, "divide by 255"), (torch.rand(2, 3, 5, 5) - 0.5, "normalised")]:
        with pytest.raises((ValueError, TypeError), match=msg.replace('[', r'\[').replace(']', r'\]')): check_images(bad)

def test_registry_lists_valid_names():
    r = Registry('corruption')
    @r.register('fog')
    def _f(x): return x
    assert r['fog'] is _f
    with pytest.raises(KeyError, match="valid names: fog"): r['frog']
    with pytest.raises(KeyError, match="already registered"): r.register('fog')(_f)

def test_atomic_save_round_trip_and_no_leftovers(tmp_path):
    p = atomic_save({'w': torch.ones(2)}, tmp_path / 'sub' / 'ck.pt')
    assert torch.equal(safe_load(p)['w'], torch.ones(2))
    atomic_write_json({'a': 1}, tmp_path / 'sub' / 'm.json')
    assert sorted(f.name for f in (tmp_path / 'sub').iterdir()) == ['ck.pt', 'm.json']

def test_atomic_save_keeps_old_file_when_serialisation_fails(tmp_path):
    p = atomic_save({'w': torch.ones(2)}, tmp_path / 'ck.pt')
    class Unpicklable:
        def __reduce__(self): raise RuntimeError("boom")
    with pytest.raises(RuntimeError): atomic_save({'bad': Unpicklable()}, p)
    assert torch.equal(safe_load(p)['w'], torch.ones(2))

class Evil: pass

def test_safe_load_refuses_arbitrary_pickles(tmp_path):
    torch.save({'obj': Evil()}, tmp_path / 'evil.pt')
    with pytest.raises(RuntimeError, match="evil.pt"): safe_load(tmp_path / 'evil.pt')

def test_generator_reproducible_and_cache_dir_env(tmp_path, monkeypatch):
    assert torch.equal(torch.rand(4, generator=make_generator(3)), torch.rand(4, generator=make_generator(3)))
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path))
    assert cache_dir('a', 'b') == tmp_path / 'a' / 'b' and (tmp_path / 'a' / 'b').is_dir()

def test_atomic_writes_get_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        for write in (lambda p: atomic_save({'w': torch.ones(1)}, p), lambda p: atomic_write_json({'a': 1}, p)):
            p = write(tmp_path / f'f{id(write)}')
            assert p.stat().st_mode & 0o777 == 0o644          # what open(p, 'w') gives under umask 022
        os.umask(0o077)
        assert atomic_write_json({}, tmp_path / 'private.json').stat().st_mode & 0o777 == 0o600
        os.umask(0o002)
        p = atomic_write_json({}, tmp_path / 'private.json')  # overwriting takes the new file's mode
        assert p.stat().st_mode & 0o777 == 0o664
        assert os.umask(0o002) == 0o002                       # reading the umask left it unchanged
    finally: os.umask(old)

def test_cache_dir_falls_back_to_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv('ROBUST_NB_CACHE', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert cache_dir('m') == tmp_path / 'xdg' / 'robust_nb' / 'm'
    monkeypatch.setenv('ROBUST_NB_CACHE', str(tmp_path / 'mine'))            # ROBUST_NB_CACHE wins
    assert cache_dir() == tmp_path / 'mine'
    monkeypatch.delenv('ROBUST_NB_CACHE')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    for xdg in ('', 'relative/path'):                                          # unset or not absolute: ignored (XDG spec)
        monkeypatch.setenv('XDG_CACHE_HOME', xdg)
        assert cache_dir() == tmp_path / 'home' / '.cache' / 'robust_nb'
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert cache_dir() == tmp_path / 'home' / '.cache' / 'robust_nb'

def test_check_images_rejects_nan_and_inf_with_count_and_images():
    x = torch.rand(4, 3, 5, 5); x[2, 0, 1, 1] = float('nan'); x[3, 1, 0, 0] = float('-inf'); x[3, 1, 0, 1] = float('inf')
    with pytest.raises(ValueError, match=r"3 non-finite values \(1 NaN, 2 Inf\) out of 300, in images \[2, 3\].*nan_to_num"):
        check_images(x, 'batch')

def test_load_errors_name_the_file(tmp_path):
    import safetensors.torch
    from robust_nb.core import load_safetensors, open_safetensors
    safetensors.torch.save_file({'w': torch.ones(100)}, tmp_path / 'w.safetensors')
    assert torch.equal(safe_load(tmp_path / 'w.safetensors')['w'], torch.ones(100))   # safe_load reads safetensors too
    data = (tmp_path / 'w.safetensors').read_bytes()
    (tmp_path / 'cut.safetensors').write_bytes(data[:-10])          # interrupted copy
    (tmp_path / 'junk.safetensors').write_bytes(b'not safetensors at all')   # safetensors alone says only "header too large"
    (tmp_path / 'cut.pt').write_bytes(b'PK\x03\x04 truncated')
    for name in ['cut.safetensors', 'junk.safetensors']:
        for f in (safe_load, load_safetensors, open_safetensors):
            with pytest.raises(RuntimeError, match=rf"{name}.*copy it again"): f(tmp_path / name)
    with pytest.raises(RuntimeError, match=r"cut\.pt.*truncated"): safe_load(tmp_path / 'cut.pt')
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors does not exist"): load_safetensors(tmp_path / 'nope.safetensors')
    with pytest.raises(IsADirectoryError, match="is a folder"): safe_load(tmp_path)
