"""Packaging: `python -m build` makes a wheel and an sdist that carry the package data, and the wheel installs into a
fresh venv where `import robust_nb` and a console script's `--help` work — so a PyPI release works the day it is made."""
import os, subprocess, sys, sysconfig, tarfile, venv, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _assets():
    "Package data that must ship: every asset file in the source tree (ImageNet tables, shipped embedded weights)."
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT/'robust_nb'/'assets').rglob('*') if p.is_file())

@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    pytest.importorskip('build')
    out = tmp_path_factory.mktemp('dist')
    r = subprocess.run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(out), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (whl,), (sdist,) = list(out.glob('*.whl')), list(out.glob('*.tar.gz'))
    return whl, sdist

def test_wheel_and_sdist_carry_package_data(dist):
    whl, sdist = dist
    names = set(zipfile.ZipFile(whl).namelist())
    missing = [a for a in _assets() if a not in names]
    assert not missing, f'wheel lacks package data: {missing}'
    assert 'robust_nb/cli.py' in names or 'robust_nb/core.py' in names
    with tarfile.open(sdist) as t: snames = {n.split('/', 1)[1] for n in t.getnames() if '/' in n}
    missing = [a for a in _assets() + ['settings.ini', 'setup.py', 'README.md'] if a not in snames]
    assert not missing, f'sdist lacks: {missing}'

def test_wheel_installs_into_fresh_venv(dist, tmp_path):
    whl, _ = dist
    env_dir = tmp_path/'venv'
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir/'bin'/'python'
    # Dependencies (torch, timm, ...) come from this interpreter's site-packages through a .pth line; robust_nb itself
    # must come from the wheel (a path added by a .pth line does not process that dir's own editable-install .pth).
    site = subprocess.check_output([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], text=True).strip()
    Path(site, '_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', str(whl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    where = subprocess.check_output([str(py), '-c', 'import robust_nb; print(robust_nb.__file__)'], text=True, env=env, cwd=tmp_path).strip()
    assert where.startswith(str(env_dir)), f'robust_nb imported from {where}, not from the installed wheel'
    for script in ('robust_nb_eval', 'robust_nb_quickstart'):
        r = subprocess.run([str(env_dir/'bin'/script), '--help'], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert r.returncode == 0, f'{script} --help failed: {r.stderr[-1500:]}'
        assert 'usage' in r.stdout.lower()
