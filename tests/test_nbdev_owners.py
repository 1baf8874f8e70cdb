"""The export processor of tools/nbdev_owners: one notebook writing several modules, exported twice, gives the same
package; layouts nbdev would silently get wrong are refused."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require

PYPROJECT = '''[project]
name = "demo"
version = "0.0.1"
[tool.nbdev]
lib_path = "demo"
export_procs = ["dlcourse_nbdev:ModuleOwners"]
'''


def notebook(*cells):
    return {'cells': [{'cell_type': 'code', 'id': f'c{i}', 'metadata': {}, 'outputs': [], 'execution_count': None,
                       'source': src} for i, src in enumerate(cells)],
            'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
            'nbformat': 4, 'nbformat_minor': 5}


def project(tmp_path, notebooks):
    (tmp_path/'pyproject.toml').write_text(PYPROJECT)
    (tmp_path/'nbs').mkdir()
    for name, nb in notebooks.items(): (tmp_path/'nbs'/name).write_text(json.dumps(nb))
    return tmp_path


def export(path):
    exe = shutil.which('nbdev-export')
    assert exe, 'nbdev-export is not installed'
    return subprocess.run([exe], cwd=path, capture_output=True, text=True)


def test_several_modules_from_one_notebook(tmp_path):
    require('dlcourse_nbdev')
    p = project(tmp_path, {
        '01_a.ipynb': notebook('#| default_exp a', '#| export\ndef f(): return 1', '#| export b\ndef g(): return 2'),
        '02_c.ipynb': notebook('#| default_exp c', '#| export b\ndef h(): return 3', '#| export a\ndef k(): return 4'),
    })
    assert export(p).returncode == 0
    first = {f.name: f.read_text() for f in (p/'demo').glob('*.py')}
    assert export(p).returncode == 0
    second = {f.name: f.read_text() for f in (p/'demo').glob('*.py')}
    assert first == second                                   # idempotent: nothing appended twice
    b = second['b.py']
    assert b.count('def g()') == 1 and b.count('def h()') == 1 and "__all__ = ['g', 'h']" in b
    assert second['a.py'].count('def k()') == 1


@pytest.mark.parametrize('notebooks,fragment', [
    ({'01_a.ipynb': notebook('#| default_exp a'), '02_b.ipynb': notebook('#| default_exp a')},
     'both declare `#| default_exp a`'),
    ({'01_a.ipynb': notebook('#| default_exp a', '#| export b\ndef g(): pass'),
      '02_b.ipynb': notebook('#| default_exp b', '#| export\ndef h(): pass')},
     'is exported after it'),
])
def test_refuses_what_nbdev_gets_wrong(tmp_path, notebooks, fragment):
    require('dlcourse_nbdev')
    r = export(project(tmp_path, notebooks))
    assert r.returncode != 0 and fragment in r.stderr, r.stderr
