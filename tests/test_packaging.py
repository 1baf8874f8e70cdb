"""The package as a user gets it: the sdist and the wheel that `python -m build` makes (the wheel built from the sdist),
their metadata and contents; the README's PyTorch-style script, with dlcourse and, changed only in its imports and the
backward line, with PyTorch; and (slow) the whole path of a student who installs the wheel with the `course` extra into
a fresh virtual environment outside the repository, trains with `dlcourse train` and runs a lesson from
`dlcourse notebooks`."""
import ast
import difflib
import email.parser
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import require

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {'course', 'torch', 'docs', 'dev'}
# import name -> distribution name, for the modules the package imports that are not named like their distribution
DISTRIBUTION = {'IPython': 'ipython'}


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    "The sdist and the wheel, built as a user or a release would build them: `python -m build` (wheel from the sdist)"
    require('build')
    out = tmp_path_factory.mktemp('dist')
    r = subprocess.run([sys.executable, '-m', 'build', '--outdir', str(out), str(ROOT)], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    (wheel,), (sdist,) = out.glob('*.whl'), out.glob('*.tar.gz')
    return wheel, sdist, r.stdout + r.stderr


def metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
        return email.parser.Parser().parsestr(z.read(name).decode())


def requirements(meta):
    "extra (None for the base) -> {distribution name: requirement text}"
    reqs = {}
    for line in meta.get_all('Requires-Dist'):
        spec, _, marker = line.partition(';')
        extra = re.search(r'extra == "([^"]+)"', marker)
        name = re.match(r'[A-Za-z0-9_.-]+', spec).group().lower()
        reqs.setdefault(extra and extra.group(1), {})[name] = spec.strip()
    return reqs


def test_build_is_clean(dist):
    "No setuptools warning about the package layout (data folders taken for packages, files left out)"
    log = dist[2]
    assert 'is absent from the `packages` configuration' not in log, log[-3000:]
    assert 'SetuptoolsDeprecationWarning' not in log, log[-3000:]


def test_wheel_metadata(dist):
    meta = metadata(dist[0])
    assert meta['Name'] == 'dlcourse' and meta['Requires-Python'] == '>=3.10'
    assert meta['License-Expression'] == 'Apache-2.0 AND MIT'
    assert sorted(meta.get_all('License-File')) == ['LICENSE', 'dlcourse/data/LICENSE-fashion-mnist.txt']
    assert meta['Description-Content-Type'] == 'text/markdown' and 'PyTorch' in meta.get_payload()
    classifiers = meta.get_all('Classifier')
    assert {f'Programming Language :: Python :: 3.{v}' for v in (10, 11, 12, 13)} <= set(classifiers)
    assert not any(c.startswith('License ::') for c in classifiers)      # the expression says it (PEP 639)
    assert set(meta.get_all('Provides-Extra')) == EXTRAS
    reqs = requirements(meta)
    pinned = [spec for extra in reqs.values() for spec in extra.values() if '==' in spec]
    assert pinned == [], 'exact pins belong in the test command, not in what users install'
    base = reqs[None]
    assert {'traitlets', 'ipython', 'anywidget', 'ipywidgets', 'numpy', 'numba'} <= set(base)
    assert '<' not in base['anywidget'], 'a newer anywidget must not be blocked'
    assert 'torch' not in base and 'torch' not in reqs['course'] and 'jupyterlab' in reqs['course']
    assert 'torch' in reqs['torch'] and re.fullmatch(r'torch>=2\.\d+', reqs['torch']['torch'])


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import): yield from (a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0: yield node.module.split('.')[0]


def test_every_import_is_declared(dist):
    "Every third-party module the package imports is a dependency (torch: of the torch extra, for dlcourse.interop)"
    reqs = requirements(metadata(dist[0]))
    imported = {}
    for path in (ROOT/'dlcourse').rglob('*.py'):
        for name in _imports(path):
            if name not in sys.stdlib_module_names and name != 'dlcourse': imported.setdefault(name, set()).add(path.name)
    for name, where in sorted(imported.items()):
        dist_name = DISTRIBUTION.get(name, name).lower()
        if name == 'torch': assert where == {'interop.py'} and dist_name in reqs['torch'], where
        else: assert dist_name in reqs[None], f'{name} (imported by {sorted(where)}) is not a dependency'


def test_wheel_holds_the_package_and_the_course(dist):
    from dlcourse.notebooks import course_files
    with zipfile.ZipFile(dist[0]) as z: names = set(z.namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT/'dlcourse').rglob('*.py') if '__pycache__' not in p.parts}
    assert modules - names == set()
    course = {f'dlcourse/course/{f.as_posix()}' for f in course_files(ROOT/'nbs')}
    assert 'dlcourse/course/index.ipynb' in course and 'dlcourse/course/lib/learner.ipynb' in course
    assert course - names == set() and {n for n in names if n.startswith('dlcourse/course/')} == course
    shipped = {p.relative_to(ROOT).as_posix() for folder in ('data', 'widgets/static')
               for p in (ROOT/'dlcourse'/folder).iterdir()}
    shipped.add('dlcourse/engine/first_steps.json')               # engine.ahead's record of first training steps
    shipped |= {p.relative_to(ROOT).as_posix() for p in (ROOT/'dlcourse'/'kernels'/'prebuilt').glob('*.pkl')}   # compiled kernels
    assert len(shipped) > 8
    assert shipped - names == set()
    assert not any(n.startswith('tests/') for n in names)


def test_sdist_builds_the_wheel_and_has_no_tests(dist):
    "The sdist holds what builds the wheel (it was built from it); the tests stay in the repository, where they can run"
    with tarfile.open(dist[1]) as t: names = {n.split('/', 1)[1] for n in t.getnames() if '/' in n}
    assert {'pyproject.toml', 'README.md', 'LICENSE', 'MANIFEST.in', 'nbs/index.ipynb', 'nbs/lib/learner.ipynb',
            'dlcourse/data/LICENSE-fashion-mnist.txt', 'dlcourse/notebooks.py'} <= names
    assert not any(n.startswith('tests/') for n in names), sorted(n for n in names if n.startswith('tests/'))


# -------------------------------------------------------------------------------------------------- dlcourse notebooks
def _snapshot(folder): return {p.relative_to(folder): p.read_bytes() for p in folder.rglob('*') if p.is_file()}


def test_notebooks_copies_the_course(tmp_path):
    from dlcourse.notebooks import copy_notebooks, course_dir, course_files
    files = course_files()
    assert {Path('index.ipynb'), Path('00_core.ipynb'), Path('glossary.md'), Path('lib/learner.ipynb'),
            Path('data/relu_vs_tanh.json')} <= set(files)
    written = copy_notebooks(tmp_path/'new'/'course')
    assert written == [tmp_path/'new'/'course'/f for f in files]
    assert _snapshot(tmp_path/'new'/'course') == {f: (course_dir()/f).read_bytes() for f in files}   # nothing else


def test_notebooks_refuses_to_overwrite_unless_forced(tmp_path):
    from dlcourse.notebooks import copy_notebooks
    (tmp_path/'index.ipynb').write_text('my own notes')
    (tmp_path/'mine.txt').write_text('kept')
    refused = r'already holds 1 of the course.s \d+ files \(index.ipynb\): nothing was copied'
    with pytest.raises(FileExistsError, match=refused):
        copy_notebooks(tmp_path)
    assert _snapshot(tmp_path) == {Path('index.ipynb'): b'my own notes', Path('mine.txt'): b'kept'}
    copy_notebooks(tmp_path, force=True)
    assert (tmp_path/'index.ipynb').read_bytes() != b'my own notes' and (tmp_path/'mine.txt').read_text() == 'kept'


def test_notebooks_failure_changes_nothing(tmp_path, monkeypatch):
    "A copy that fails halfway (here: the disk fills up at the fifth file) leaves the folder as it was, and no new folder"
    import errno
    import shutil
    from dlcourse import notebooks
    copy, calls = shutil.copyfile, []
    def full_disk(src, dst):
        calls.append(dst)
        if len(calls) == 5: raise OSError(errno.ENOSPC, 'No space left on device')
        return copy(src, dst)
    monkeypatch.setattr(notebooks.shutil, 'copyfile', full_disk)
    (tmp_path/'mine.txt').write_text('kept')
    with pytest.raises(OSError, match='No space left'): notebooks.copy_notebooks(tmp_path)
    assert _snapshot(tmp_path) == {Path('mine.txt'): b'kept'} and [p.name for p in tmp_path.iterdir()] == ['mine.txt']
    calls.clear()
    with pytest.raises(OSError, match='No space left'): notebooks.copy_notebooks(tmp_path/'new')
    assert not (tmp_path/'new').exists()


def test_notebooks_bad_arguments(tmp_path):
    from dlcourse.notebooks import copy_notebooks
    (tmp_path/'file').write_text('')
    (tmp_path/'dir'/'index.ipynb').mkdir(parents=True)
    for call, exc, message in [(lambda: copy_notebooks(3), TypeError, 'dest must be a str or os.PathLike, got int'),
                               (lambda: copy_notebooks(tmp_path, force='yes'), TypeError, "force must be True or False"),
                               (lambda: copy_notebooks(tmp_path/'file'), NotADirectoryError, 'is a file, not a folder'),
                               (lambda: copy_notebooks(tmp_path/'dir', force=True), IsADirectoryError,
                                'index.ipynb is a folder')]:
        with pytest.raises(exc, match=re.escape(message)): call()


def test_notebooks_command(tmp_path):
    cmd = [sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())', 'notebooks']
    r = subprocess.run([*cmd, str(tmp_path/'course')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"open the course with: jupyter lab {tmp_path/'course'}"
    r = subprocess.run([*cmd, str(tmp_path/'course')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == '' and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith('dlcourse notebooks: error: ') and 'replace them with --force' in r.stderr
    r = subprocess.run([*cmd, '--force', str(tmp_path/'course')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------- the README's PyTorch-style script
DLCOURSE_IMPORTS = ('from dlcourse import manual_seed, Sequential, Conv2d, Tanh, AvgPool2d, Flatten, Linear, '
                    'CrossEntropyLoss, SGD, DataLoader')
TORCH_IMPORTS = ('from torch import manual_seed\n'
                 'from torch.nn import Sequential, Conv2d, Tanh, AvgPool2d, Flatten, Linear, CrossEntropyLoss\n'
                 'from torch.optim import SGD\n'
                 'from torch.utils.data import DataLoader')
EXPLICIT_BACKWARD = 'model.backward(loss_fn.backward())'


def readme_script():
    "The README's LeNet-5 script (the python block that holds the course's explicit backward call)"
    blocks = re.findall(r'```python\n(.*?)```', (ROOT/'README.md').read_text(encoding='utf-8'), re.S)
    (script,) = [b for b in blocks if EXPLICIT_BACKWARD in b]
    return script


def as_torch(script):
    "The script for PyTorch: other imports, and `loss.backward()` for the explicit backward call; nothing else"
    assert DLCOURSE_IMPORTS in script and script.count(EXPLICIT_BACKWARD) == 1
    return script.replace(DLCOURSE_IMPORTS, TORCH_IMPORTS).replace(EXPLICIT_BACKWARD, 'loss.backward()')


def run_script(script, tmp_path):
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    accuracy = float(re.search(r'test accuracy ([\d.]+)%', r.stdout).group(1)) / 100
    return r.stdout, accuracy


def test_readme_script_is_short_and_pytorch_style():
    script = readme_script()
    assert len(script.strip().splitlines()) <= 22
    backward = next(line for line in script.splitlines() if EXPLICIT_BACKWARD in line)
    changed = [l for l in difflib.ndiff(script.splitlines(), as_torch(script).splitlines()) if l[:2] in ('- ', '+ ')]
    assert sorted(changed) == sorted(['- ' + DLCOURSE_IMPORTS, *('+ ' + l for l in TORCH_IMPORTS.splitlines()),
                                      '- ' + backward, '+ ' + backward.replace(EXPLICIT_BACKWARD, 'loss.backward()')])


def test_readme_script_trains_lenet5(tmp_path):
    "The script as the README shows it: LeNet-5's 61,706 parameters, one epoch on the shipped sample learns it"
    out, accuracy = run_script(readme_script(), tmp_path)
    assert '61,706 parameters' in out and accuracy > 0.6, out


@pytest.mark.slow
def test_readme_script_runs_in_pytorch(torch, tmp_path):
    "The same script with PyTorch's imports and `loss.backward()`: it runs, the same network, about as good"
    out, accuracy = run_script(as_torch(readme_script()), tmp_path)
    assert '61,706 parameters' in out and accuracy > 0.6, out


# ------------------------------------------------------------------------------------------------------ the user's path
def _venv_env(venv, **extra):
    "A child's environment: the virtual environment first on PATH, nothing of this repository on PYTHONPATH"
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME')}
    return {**env, 'VIRTUAL_ENV': str(venv), 'PATH': f"{venv/'bin'}{os.pathsep}{env.get('PATH', '')}", 'MPLBACKEND': 'Agg',
            **extra}


def _run(cmd, venv, cwd, timeout=1200):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=_venv_env(venv), timeout=timeout)
    noise = re.compile(r"^WARNING: Location '.*' is ignored", re.M)   # pip, about index folders of this machine's config
    output = '\n'.join(l for l in (r.stdout + r.stderr).splitlines() if not noise.match(l))
    print(f"$ {' '.join(map(str, cmd))}\n{output}")         # the transcript, shown by pytest -s or on failure
    return r


@pytest.mark.slow
def test_the_users_path(dist, tmp_path):
    """pip install the wheel with the course extra into a fresh venv outside the repository (not PyTorch), train one
    epoch with the `dlcourse` command, copy the course out with `dlcourse notebooks` and execute a lesson in JupyterLab's
    kernel"""
    assert not tmp_path.is_relative_to(ROOT)
    venv, home = tmp_path/'venv', tmp_path/'student'
    home.mkdir()
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=300)
    py, exe = venv/'bin'/'python', venv/'bin'
    import numba     # the Numba the shipped compiled kernels were built with (the dev extra pins it), not a newer release
    r = _run([py, '-m', 'pip', 'install', '--disable-pip-version-check', '-q', f'{dist[0]}[course]', f'numba=={numba.__version__}'],
             venv, home)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run([py, '-c', 'import importlib.util as u, dlcourse; print(dlcourse.__file__); print(u.find_spec("torch"))'],
             venv, home)
    where, torch_spec = r.stdout.split()
    _run([py, '-m', 'pip', 'show', 'dlcourse'], venv, home)
    assert Path(where).is_relative_to(venv) and torch_spec == 'None', r.stdout     # the installed package; no PyTorch

    r = _run([py, '-c', 'from dlcourse.kernels import prebuilt as p; print(p.host_level(), p.status()[1])'], venv, home)
    level, why = r.stdout.split(maxsplit=1)      # the installed Numba, the wheel's compiled kernels: used on this CPU
    assert why.strip() == 'None' if level != 'None' else why.strip() != 'None', r.stdout + r.stderr
    r = _run([exe/'dlcourse', 'train', '--epochs', '1', '--out', 'run', '--quiet'], venv, home)
    assert r.returncode == 0 and 'final test accuracy' in r.stdout, r.stderr[-3000:]
    assert {p.name for p in (home/'run').iterdir()} == {'checkpoint.npz', 'curves.png', 'history.csv'}

    r = _run([exe/'dlcourse', 'notebooks', 'course'], venv, home)
    assert r.returncode == 0 and 'jupyter lab course' in r.stdout, r.stderr
    assert (home/'course'/'index.ipynb').is_file() and (home/'course'/'data'/'relu_vs_tanh.json').is_file()
    again = _run([exe/'dlcourse', 'notebooks', 'course'], venv, home)
    assert again.returncode == 2 and 'already holds' in again.stderr and '--force' in again.stderr, again.stderr

    lesson = home/'course'/'01_sigmoid_neuron.ipynb'
    r = _run([exe/'jupyter', 'execute', '--timeout=900', lesson.name], venv, lesson.parent)
    assert r.returncode == 0, r.stderr[-5000:]
