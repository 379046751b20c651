"""tools/docs_screenshots.py applies the nbdev directives the docs site honours before nbconvert renders a page."""
import sys
from pathlib import Path
import nbformat
from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell, new_output

sys.path.insert(0, str(Path(__file__).parents[1]/'tools'))
import docs_screenshots as D

def test_directives_read_only_the_leading_comment_lines():
    assert D.directives("#| hide\nx = 1") == {'hide': ''}
    assert D.directives("#| echo: false\n#| output: False\nx = 1\n#| hide") == {'echo': 'false', 'output': 'false'}
    assert D.directives("x = 1  #| hide") == {}

def test_process_hides_strips_and_drops_outputs():
    out = new_output('execute_result', {'text/plain': '1'}, execution_count=1)
    nb = new_notebook(cells=[new_markdown_cell('# Title'), new_code_cell('#| hide\nsecret = 1', outputs=[out]),
                             new_code_cell('#| echo: false\nshown_output = 2', outputs=[out]),
                             new_code_cell('#| output: false\nquiet = 3', outputs=[out]), new_code_cell('plain = 4', outputs=[out])])
    cells = D.process(nb).cells
    assert [c.cell_type for c in cells] == ['markdown', 'code', 'code', 'code']               # the hidden cell is gone
    assert cells[1].source == 'shown_output = 2' and cells[1].metadata['transient'] == {'remove_source': True}
    assert cells[2].source == 'quiet = 3' and cells[2].outputs == []
    assert cells[3].outputs == [out]

def test_default_pages_are_the_tutorials_and_top_pages():
    names = [p.name for p in D.default_pages()]
    assert 'quickstart.ipynb' in names and names[-3:] == ['index.ipynb', 'results.ipynb', 'reliability.ipynb']
    assert all(p.exists() for p in D.default_pages())
