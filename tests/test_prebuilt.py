"""The kernels compiled ahead of time (dlcourse.kernels.prebuilt): the shipped files hold the present kernels, a fresh
install's first training steps load them and compile nothing, they compute what the kernels compiled on this machine
compute, and wherever they do not apply (a changed kernel, another CPU, NUMBA_BOUNDSCHECK, DLCOURSE_PREBUILT=0, no
writable cache) the kernels compile as before."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlcourse as dl
from dlcourse.kernels import prebuilt
from conftest import COUNT_COMPILATIONS, compiled_env

PACKAGE = Path(dl.__file__).parent

# A fresh process: a toy problem's MLP, LeNet-5 (fused and layer by layer) and the small ResNet-18 of lesson 08a each
# take training steps, then predict; prints what compiled, what was loaded from the shipped code, the losses and weights
PROBE = COUNT_COMPILATIONS + r'''
import json, sys
import numpy as np
import dlcourse as dl
from dlcourse.engine.fusion import fusion
from dlcourse.kernels import prebuilt
def steps(model, x, classes, n=2):
    model.train()
    loss_fn, opt = dl.CrossEntropyLoss(), dl.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    losses = []
    for i in range(n):
        losses.append(float(loss_fn(model(x), np.arange(len(x)) % classes)))
        opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
    model.eval()
    return dict(losses=losses, predicted=np.asarray(model(x), np.float64).tolist(),
                weights={k: np.asarray(v, np.float64).ravel().tolist() for k, v in model.state_dict().items()})
rng = np.random.default_rng(0)
out = {}
out['mlp'] = steps(dl.Sequential(dl.Linear(2, 64, rng=0), dl.ReLU(), dl.Linear(64, 2, rng=1)),
                   rng.normal(size=(32, 2)).astype(np.float32), 2)
x = rng.normal(size=(64, 1, 28, 28)).astype(np.float32)
out['lenet5'] = steps(dl.lenet5(rng=0), x, 10)
with fusion(False): out['lenet5 layer by layer'] = steps(dl.lenet5(rng=0), x, 10)
out['resnet18'] = steps(dl.resnet18(num_classes=10, in_channels=1, small_input=True, width=8, rng=0), x[:16], 10)
print(json.dumps(dict(runs=out, compiled={k: v for k, v in compiled.items() if k.startswith('dlcourse')}, loaded=len(prebuilt.loaded), status=prebuilt.status(),
                      host=prebuilt.host_level())))
'''


def probe(tmp_path, **env):
    env = compiled_env(NUMBA_CACHE_DIR=str(tmp_path / 'numba-cache'), **env)       # empty: a fresh install
    out = subprocess.run([sys.executable, '-c', PROBE], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def shipped(tmp_path_factory):
    "The probe with the shipped code (the default)"
    return probe(tmp_path_factory.mktemp('shipped'))


@pytest.fixture(scope='module')
def compiled_here(tmp_path_factory):
    "The probe with every kernel compiled on this machine (DLCOURSE_PREBUILT=0)"
    return probe(tmp_path_factory.mktemp('compiled'), DLCOURSE_PREBUILT='0')


SHIPPED_PYTHONS = ('3.10', '3.11', '3.12', '3.13')


@pytest.mark.parametrize('python', SHIPPED_PYTHONS)
def test_the_shipped_files_hold_the_present_kernels(python):
    """Each level's file for each Python was built from these kernel sources with this Numba and llvmlite (else: run
    `python tools/prebuild_kernels.py`, with --python for the other versions), and both levels hold the same versions"""
    tag, keys = dict(prebuilt.build_tag(), python=python), []
    for level in prebuilt.LEVELS:
        shipped = prebuilt.read(level, python)
        assert shipped['level'] == level
        differ = {k: (shipped['tag'].get(k), v) for k, v in tag.items() if shipped['tag'].get(k) != v}
        assert not differ, f"{level} for Python {python} was built with another {differ}: run python tools/prebuild_kernels.py"
        keys.append(set(shipped['entries']))
    assert keys[0] == keys[1] and len(keys[0]) >= 30
    names = {(module, name) for module, name, sig, hashes in keys[0]}
    for kernel in ('fused.conv_act_pool_forward', 'fused.pool_act_backward_wide', 'conv.conv_direct_backward_input',
                   'conv.gemm_nt', 'conv._gemm_nt_blocks', 'act.act_span', 'act.grad_span', 'optim.sgd_span', 'conv.im2col'):
        module, name = kernel.split('.')
        assert (f'dlcourse.kernels.{module}', name) in names, kernel


def test_no_other_files_are_shipped():
    "Nothing in the folder but the files of the shipped levels and Pythons (a stale one would go into the wheel)"
    expected = {prebuilt.path(level, python).name for level in prebuilt.LEVELS for python in SHIPPED_PYTHONS}
    assert {p.name for p in prebuilt.FOLDER.iterdir()} == expected


def test_a_fresh_install_compiles_nothing(shipped):
    """With an empty Numba cache, the first training steps and predictions of the MLP, LeNet-5 (fused and layer by
    layer) and the small ResNet-18 load every kernel from the shipped code, on a CPU with AVX2 (every CI machine)"""
    if shipped['host'] is None:            # no AVX2 (or not x86-64): the kernels compile, and status says why
        assert shipped['status'][1] and sum(shipped['compiled'].values()) > 0, shipped['status']
        return
    assert shipped['status'] == [shipped['host'], None]
    assert shipped['compiled'] == {}, shipped['compiled']
    assert shipped['loaded'] >= 10


def test_the_shipped_code_computes_what_the_compiler_does(shipped, compiled_here):
    """The same steps with every kernel compiled on this machine: the losses, predictions and weights agree. The two are
    different machine code (LLVM tunes one for this CPU, the other for a generic CPU of its level), so sums may be
    vectorised in another order: float32 rounding, at most about n * 2^-24 of the summed magnitudes for a sum of n terms
    (n up to 1,600 here: C5's filter gradient at batch 64), grown by two SGD steps; 2e-4 relative bounds it"""
    assert compiled_here['status'][1] == 'DLCOURSE_PREBUILT=0' and compiled_here['loaded'] == 0
    assert sum(compiled_here['compiled'].values()) >= 10
    for net, theirs in compiled_here['runs'].items():
        ours = shipped['runs'][net]
        np.testing.assert_allclose(ours['losses'], theirs['losses'], rtol=2e-4, err_msg=net)
        np.testing.assert_allclose(ours['predicted'], theirs['predicted'], rtol=2e-4, atol=2e-4, err_msg=net)
        for k, w in theirs['weights'].items():
            scale = np.abs(w).max()
            np.testing.assert_allclose(ours['weights'][k], w, rtol=2e-4, atol=2e-4 * scale, err_msg=f'{net} {k}')


def test_a_changed_kernel_is_compiled_not_loaded(tmp_path):
    """A copy of the package whose ReLU kernel was edited: its sources no longer match the shipped code, so the edited
    kernel compiles and runs (the shipped ReLU would give other numbers)"""
    root = tmp_path / 'site'
    shutil.copytree(PACKAGE, root / 'dlcourse', ignore=shutil.ignore_patterns('__pycache__'))
    act = root / 'dlcourse' / 'kernels' / 'act.py'
    source = act.read_text()
    relu = 'def _relu(v, param, one): return one - one if v <= one - one else v'
    assert source.count(relu) == 1
    act.write_text(source.replace(relu, relu.replace('return ', 'return one + (') + ')'))      # ReLU + 1
    script = ('import json, numpy as np, dlcourse as dl\nfrom dlcourse.kernels import prebuilt\n'
              'y = dl.ReLU()(np.array([-1, 0.5, 2], np.float32))\n'
              'print(json.dumps(dict(y=y.tolist(), status=prebuilt.status(), file=dl.__file__)))')
    env = compiled_env(PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp_path / 'numba-cache'))
    out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r['file'] == str(root / 'dlcourse' / '__init__.py')
    assert r['y'] == [1.0, 1.5, 3.0]                     # the edited kernel, not the shipped one ([0, 0.5, 2])
    if r['status'][0] is not None: assert 'sources' in r['status'][1], r['status']


def test_without_a_writable_cache_the_shipped_code_is_used(tmp_path):
    """Where Numba can cache nothing (kernels.jit's CacheWarning), the shipped code still loads: a process's first
    LeNet-5 step compiles nothing there either"""
    root = tmp_path / 'site'
    shutil.copytree(PACKAGE, root / 'dlcourse', ignore=shutil.ignore_patterns('__pycache__'))
    for d in [root / 'dlcourse', *(p for p in (root / 'dlcourse').rglob('*') if p.is_dir())]: (d / '__pycache__').write_text('')
    env = compiled_env(PYTHONPATH=str(root), NUMBA_CACHE_DIR='/dev/null/numba', XDG_CACHE_HOME='/dev/null/cache',
                       HOME='/dev/null/home', PYTHONDONTWRITEBYTECODE='1')
    out = subprocess.run([sys.executable, '-W', 'always', '-c', PROBE], env=env, capture_output=True, text=True,
                         timeout=900, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'CacheWarning' in out.stderr                   # really no cache
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r['host'] is None: return                          # no AVX2: compiled, as test_a_fresh_install_compiles_nothing says
    assert r['compiled'] == {} and r['loaded'] >= 10, r['compiled']


# ---------------------------------------------------------------------------------- when the shipped code is not used
@pytest.fixture
def fresh(monkeypatch):
    "prebuilt's choice made again for this test (and restored after it)"
    monkeypatch.setattr(prebuilt, '_state', {})
    monkeypatch.delenv('DLCOURSE_PREBUILT', raising=False)
    return monkeypatch


from numba.core import codegen as _codegen
_HOST_FEATURES = {f[1:] for f in _codegen.get_host_cpu_features().split(',')}


def _features(*on):
    "A CPU's feature string (as Numba gives it: '+avx2,-avx512f,...') with only the features `on`"
    return ','.join(('+' if name in on else '-') + name for name in sorted(_HOST_FEATURES | prebuilt.LEVELS['x86-64-v4']))


def test_the_level_follows_the_cpus_features(fresh):
    fresh.setattr('platform.machine', lambda: 'x86_64')
    v3, v4 = prebuilt.LEVELS['x86-64-v3'], prebuilt.LEVELS['x86-64-v4']
    for on, level in [(v4 | {'sha', 'avx512vnni'}, 'x86-64-v4'), (v3 | {'avx512f'}, 'x86-64-v3'),
                      (v3 - {'fma'}, None), (v3 - {'movbe'}, None), (set(), None)]:
        fresh.setattr(_codegen, 'get_host_cpu_features', lambda on=on: _features(*on))
        assert prebuilt.host_level() == level, (sorted(on), level)
    fresh.setattr(_codegen, 'get_host_cpu_features', lambda: '')       # what Numba says where LLVM cannot tell
    assert prebuilt.host_level() is None
    fresh.setattr('platform.machine', lambda: 'aarch64')
    assert prebuilt.host_level() is None


@pytest.mark.parametrize('case', ['opt-out', 'boundscheck', 'cpu name', 'sources', 'numba', 'no avx2', 'missing file'])
def test_where_the_shipped_code_does_not_apply_nothing_is_loaded(fresh, case, tmp_path):
    "Each reason not to use the shipped code: status() names it, and no kernel version is found in it"
    import numba
    if case == 'opt-out': fresh.setenv('DLCOURSE_PREBUILT', '0')
    if case == 'boundscheck': fresh.setattr(numba.config, 'BOUNDSCHECK', 1)
    if case == 'cpu name': fresh.setattr(numba.config, 'CPU_NAME', 'skylake')
    if case == 'sources': fresh.setattr(prebuilt, 'sources_hash', lambda: '0' * 64)
    if case == 'numba': fresh.setattr(numba, '__version__', '0.99.0')
    if case == 'no avx2': fresh.setattr(_codegen, 'get_host_cpu_features', lambda: _features(*prebuilt.LEVELS['x86-64-v3'] - {'avx2'}))
    if case == 'missing file': fresh.setattr(prebuilt, 'FOLDER', tmp_path)
    level, why = prebuilt.status()
    expected = {'opt-out': 'DLCOURSE_PREBUILT=0', 'boundscheck': 'NUMBA_BOUNDSCHECK', 'cpu name': 'NUMBA_CPU_NAME',
                'sources': 'sources', 'numba': 'numba', 'no avx2': 'AVX2', 'missing file': 'no shipped code'}[case]
    assert why is not None and expected in why, why
    from dlcourse.kernels import act
    assert not prebuilt.has(act.act_span, tuple(act.act_span.signatures[0]) if act.act_span.signatures else ())
    assert prebuilt.payload(act.act_span.py_func, ()) is None


def test_the_key_is_numbas_cache_key():
    "prebuilt.key hashes a kernel's bytecode as Numba's disk cache does (so a kernel whose code changed has another key)"
    from numba.core import types
    from dlcourse.kernels import act
    sig = (types.float32[::1], types.float32[::1], types.int64, types.float32)
    module, name, args, hashes = prebuilt.key(act.act_span.py_func, sig)
    assert (module, name, args) == ('dlcourse.kernels.act', 'act_span', sig)
    cache = act.act_span._cache
    numba_key = cache._index_key(sig, act.act_span.targetctx.codegen())
    assert hashes == numba_key[2]


def test_a_damaged_entry_is_compiled_instead(fresh):
    """An entry that cannot be loaded (a damaged file) costs a compilation, never a failed call, and nothing more is
    loaded from that file"""
    import warnings
    from numba.core import types
    from dlcourse.kernels import jit as kernels_jit
    namespace = {}
    exec('def plus_one(x): return x + 1', namespace)        # no source file: compiled without a disk cache
    fresh.setattr(kernels_jit, '_uncached', [])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', kernels_jit.CacheWarning)
        disp = kernels_jit.jit()(namespace['plus_one'])
    fresh.setattr(prebuilt, '_state', dict(level='x86-64-v3', why=None,
                                           entries={prebuilt.key(disp.py_func, (types.int64,)): b'damaged'}))
    assert disp(41) == 42
    level, why = prebuilt.status()
    assert 'failed to load' in why and prebuilt._state['entries'] is None
