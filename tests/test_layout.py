"Layout rules of issue 12: every module imports on its own, robust_nb's imports form no cycle, no function over 100 lines."
import ast, os, subprocess, sys
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1] / 'robust_nb'
MODULES = sorted(p.stem for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx'))
MAX_LINES = 100


def _targets(node, mod) -> set[str]:
    "robust_nb modules an import node of module `mod` refers to (relative or absolute, at module level or inside a function)."
    out = set()
    if isinstance(node, ast.ImportFrom):
        if node.level == 1:
            out |= {node.module.split('.')[0]} if node.module else {a.name for a in node.names}
        elif node.level == 0 and node.module == 'robust_nb': out |= {a.name for a in node.names}
        elif node.level == 0 and node.module and node.module.startswith('robust_nb.'): out.add(node.module.split('.')[1])
    elif isinstance(node, ast.Import):
        out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('robust_nb.')}
    return {t for t in out if t in MODULES and t != mod}


def import_graph(pkg=PKG) -> dict[str, set[str]]:
    "module -> robust_nb modules it imports anywhere in its source."
    g = {}
    for p in sorted(pkg.glob('*.py')):
        if p.stem in ('__init__', '_modidx'): continue
        tree = ast.parse(p.read_text(), filename=str(p))
        g[p.stem] = set().union(*[_targets(n, p.stem) for n in ast.walk(tree)])
    return g


def find_cycle(g) -> list[str] | None:
    "One cycle of `g` as a path [a, b, ..., a], or None."
    state, stack = {}, []
    def visit(n):
        state[n] = 'open'; stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 'open': return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)): return c
        state[n] = 'done'; stack.pop()
    for n in sorted(g):
        if n not in state and (c := visit(n)): return c
    return None


def long_functions(pkg=PKG, limit=MAX_LINES) -> list[str]:
    "'module.py:line qualname (n lines)' for every function or method longer than `limit` lines (decorators excluded)."
    out = []
    for p in sorted(pkg.glob('*.py')):
        tree = ast.parse(p.read_text(), filename=str(p))
        def walk(node, prefix=''):
            for ch in ast.iter_child_nodes(node):
                if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = ch.end_lineno - ch.lineno + 1
                    if n > limit: out.append(f"{p.name}:{ch.lineno} {prefix}{ch.name} ({n} lines)")
                    walk(ch, f"{prefix}{ch.name}.")
                elif isinstance(ch, ast.ClassDef): walk(ch, f"{prefix}{ch.name}.")
                else: walk(ch, prefix)
        walk(tree)
    return out


def test_cycle_finder_and_parser_on_known_graphs(tmp_path):
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    code = {'core': "import torch\n", 'metrics': "from .core import Registry\ndef f():\n    from robust_nb.evaluate import evaluate\n",
            'evaluate': "from . import metrics as M\nimport robust_nb.core\n"}
    for k, v in code.items(): (tmp_path / f'{k}.py').write_text(v)
    global MODULES
    old, MODULES = MODULES, list(code)
    try: g = import_graph(tmp_path)
    finally: MODULES = old
    assert g == {'core': set(), 'metrics': {'core', 'evaluate'}, 'evaluate': {'metrics', 'core'}}   # imports inside functions count
    assert find_cycle(g) == ['evaluate', 'metrics', 'evaluate']
    (tmp_path / 'long.py').write_text("def f():\n" + "    x = 1\n" * 100 + "def g():\n    pass\n")
    assert long_functions(tmp_path) == ['long.py:1 f (101 lines)']


def test_no_import_cycle_inside_robust_nb():
    g = import_graph()
    assert set(g) == set(MODULES)
    cycle = find_cycle(g)
    assert cycle is None, f"import cycle inside robust_nb: {' -> '.join(cycle)} (move the shared code down a layer)"


def test_no_function_over_100_lines():
    long = long_functions()
    assert not long, f"functions over {MAX_LINES} lines (split them into parts a reader can hold):\n" + "\n".join(long)


@pytest.mark.parametrize('mod', MODULES)
def test_each_module_imports_in_a_fresh_interpreter(mod):
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', f'import robust_nb.{mod}'], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"`import robust_nb.{mod}` fails in a fresh interpreter:\n{r.stderr[-2000:]}"
