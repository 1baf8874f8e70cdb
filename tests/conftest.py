"""Shared test setup.

Under the test command (tools/test sets DLCOURSE_REQUIRE_ALL=1) a missing test dependency, such as PyTorch for the oracle
tests, is an error, never a skip: CI must not go green by silently testing less.
"""
import importlib
import os
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


def require(module_name):
    "Import a test dependency: a failure under the test command, a skip when running pytest by hand"
    if REQUIRE_ALL: return importlib.import_module(module_name)
    return pytest.importorskip(module_name)


@pytest.fixture(scope='session')
def torch():
    torch = require('torch')
    torch.set_default_dtype(torch.float32)
    return torch


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
