"""Shared test setup.

Under the test command (tools/test sets DLCOURSE_REQUIRE_ALL=1) a missing test dependency, such as PyTorch for the oracle
tests, is an error, never a skip: CI must not go green by silently testing less. Run by hand, a test whose dependency is
missing is skipped with the reason (`require`), and the tests marked `slow` (the wheel installed into a fresh virtual
environment) run only with --slow; the test command runs them all.
"""
import importlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile('dlcourse', deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
# the kernels' safety-net runs (bounds-checked, or as plain Python) repeat the kernel tests with fewer examples
settings.register_profile('safety', deadline=None, max_examples=8, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get('DLCOURSE_HYPOTHESIS_PROFILE', 'dlcourse'))

REQUIRE_ALL = os.environ.get('DLCOURSE_REQUIRE_ALL') == '1'
TESTS = Path(__file__).resolve().parent


def require(module_name, extra='dev'):  # the module, and the extra of pyproject.toml that installs it
    "Import a test dependency: a failure under the test command, a skip (naming the extra) when running pytest by hand"
    if REQUIRE_ALL: return importlib.import_module(module_name)
    return pytest.importorskip(module_name, reason=f"needs {module_name}: pip install -e '.[{extra}]'")


def pytest_addoption(parser):
    parser.addoption('--slow', action='store_true', help='also run the tests marked slow (the test command always does)')


def pytest_collection_modifyitems(config, items):
    "Skip the tests marked slow, saying why, unless --slow is given or this is the test command (DLCOURSE_REQUIRE_ALL=1)"
    if REQUIRE_ALL or config.getoption('--slow'): return
    skip = pytest.mark.skip(reason='slow (minutes): run with --slow; the test command (DLCOURSE_REQUIRE_ALL=1) runs it')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)


@pytest.fixture(scope='session')
def torch():
    torch = require('torch')
    torch.set_default_dtype(torch.float32)
    return torch


# The start of a child process's script that counts compilations: `compiled` maps 'module.kernel' to the times Numba
# compiled it (versions loaded from a cache or the shipped code are not compilations)
COUNT_COMPILATIONS = r'''
import collections
from numba.core import event
compiled = collections.Counter()
class Count(event.Listener):
    def on_start(self, ev): pass
    def on_end(self, ev):
        f = ev.data['dispatcher'].py_func
        compiled[f.__module__ + '.' + f.__qualname__] += 1
event.register('numba:compile', Count())
'''


def compiled_env(**env):
    """The environment for a child process that must run the compiled kernels from the package's cache: this one without
    NUMBA_DISABLE_JIT, NUMBA_BOUNDSCHECK and NUMBA_CACHE_DIR (tools/test also runs the kernel tests under the first two,
    with a private cache that no unchecked kernel may enter), plus `env`"""
    base = {k: v for k, v in os.environ.items() if k not in ('NUMBA_DISABLE_JIT', 'NUMBA_BOUNDSCHECK', 'NUMBA_CACHE_DIR')}
    return {**base, **env}


def child_env(**env):
    """The environment for a child process that imports the tests' own modules (`python -c 'from fault_child import ...'`):
    this one with tests/ first on PYTHONPATH (pyproject's pytest `pythonpath` reaches only this process), plus `env`"""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get('PYTHONPATH', '')) if p)
    return {**os.environ, 'PYTHONPATH': path, **env}


def ctrl_c_reaches_child():
    """preexec_fn for a child that a test interrupts with SIGINT: the signal at its default action. A job that a
    non-interactive shell starts in the background (`tools/test &`) ignores SIGINT, its children inherit that, and Python
    leaves a signal ignored at startup ignored: the child would never see the test's Ctrl-C"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}


# ------------------------------------------------------------------------------------------------ the oracles' headroom
ERRORS = {}     # largest error seen / tolerance, by quantity: reported after the run


def record_error(name, err, tol):
    "Keep the largest relative error of quantity `name`, against its tolerance, for the report after the run"
    prev = ERRORS.get(name)
    if prev is None or err / tol > prev[0] / prev[1]: ERRORS[name] = (err, tol)


def pytest_terminal_summary(terminalreporter):
    "The oracle comparisons that used most of their tolerance in this run (the headroom left on this machine)"
    if not ERRORS: return
    ranked = sorted(ERRORS.items(), key=lambda kv: -kv[1][0] / kv[1][1])
    terminalreporter.section('largest relative errors of the oracle comparisons, against their tolerance')
    for name, (err, tol) in ranked[:8]:
        terminalreporter.write_line(f"{name:50s} {err:9.2e} <= {tol:8.2e}  ({err / tol:6.1%} of it)")
    if len(ranked) > 8:
        terminalreporter.write_line(f"... and {len(ranked) - 8} more, at most {ranked[8][1][0] / ranked[8][1][1]:.1%} of theirs")


# ---------------------------------------------------------------------------------- rounding differences between machines
EPS = {np.dtype(np.float32): float(np.finfo(np.float32).eps), np.dtype(np.float64): float(np.finfo(np.float64).eps)}


def rounding_tol(dtype, n=1, depth=1, cond=1, k=1):
    """The tolerance for comparing two correct computations of the same float `dtype` result, relative to the result's
    scale (its largest magnitude): k * eps * sqrt(n) * depth * cond.

    Correct implementations round differently, and differently on different CPUs: PyTorch (MKL, oneDNN), NumPy (OpenBLAS)
    and the package's Numba kernels (fast-math lets LLVM reorder sums) block their sums by the SIMD width, 8 float32 lanes
    with AVX2 and 16 with AVX-512. A sum of `n` terms of random sign, added in another order, changes by about
    eps * sqrt(n) of its scale (the rounding errors of the additions add up like a random walk). A network adds such an
    error at each of its `depth` layers (the most weight layers on one path from input to output) and passes on what it
    received, so errors add up along the depth. `cond` is how much the computation amplifies errors beyond that: 1 in
    evaluation mode; more where it cancels, as training-mode batch norm over few values per channel does (it divides by
    their spread). Measured on the zoo's networks in evaluation mode, float32 with AVX-512, AVX2 and SSE4 code paths
    (MKL, oneDNN, OpenBLAS, NumPy and Numba each told to use them): at most 6% of k * eps * sqrt(n) * depth, so k = 1
    leaves headroom for other machines while a wrong result (say, batch norm's eps 1e-5 instead of GoogLeNet's 1e-3,
    off by 5e-4) is still outside.
    """
    return k * EPS[np.dtype(dtype)] * np.sqrt(n) * depth * cond


def assert_close(got, want, n=1, depth=1, cond=1, k=1, scale=None, name=None, err_msg=''):
    """Assert max|got - want| <= rounding_tol(got's dtype, n, depth, cond, k) * scale, with `scale` the largest |want|
    unless given; `name` records the error for the report after the run"""
    want = np.asarray(want.detach().numpy() if hasattr(want, 'detach') else want)
    got = np.asarray(got)
    what = err_msg or name or 'result'
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    tol = rounding_tol(got.dtype, n, depth, cond, k)
    scale = float(np.abs(want).max(initial=0) if scale is None else scale) or 1.0
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0)) / scale
    if name is not None: record_error(name, err, tol)
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.2e} (n={n}, depth={depth}, cond={cond}, k={k})"
