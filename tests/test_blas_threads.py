"""Importing dlcourse puts NumPy's OpenBLAS workers to sleep right after each product (engine.matmul.quiet_blas_threads),
instead of letting them spin for ~0.1 s on the cores Numba's kernels need. Each case runs in a fresh interpreter, since
OpenBLAS reads its settings when it is loaded. What a spinning worker costs is measured as the process's CPU time while
its only Python thread sleeps."""
import json
import os
import subprocess
import sys

import pytest

from dlcourse.engine import matmul

PROBE = r'''
import json, os, sys, time
import numpy as np
if sys.argv[1] == 'dlcourse':
    from dlcourse.engine import matmul
    state = matmul.BLAS_THREADS
    lib = matmul._openblas()
    threads = matmul._symbol(lib, 'openblas_get_num_threads')() if lib is not None else None
else:
    state, threads = 'numpy only', None
rng = np.random.default_rng(0)
a, b = rng.normal(size=(512, 300)).astype(np.float32), rng.normal(size=(300, 400)).astype(np.float32)
spins = []
for _ in range(3):
    c = a @ b                                    # a product large enough for both of OpenBLAS's threads
    t = time.process_time(); time.sleep(0.25); spins.append(time.process_time() - t)
err = float(np.abs(c - a.astype(np.float64) @ b).max())
print(json.dumps(dict(state=state, spin=min(spins), threads=threads, err=err,
                      env='OPENBLAS_THREAD_TIMEOUT' in os.environ)))
'''


def probe(who, **env):
    "Run PROBE in a fresh interpreter with OpenBLAS on two threads; its JSON answer"
    base = {k: v for k, v in os.environ.items() if k not in ('OPENBLAS_THREAD_TIMEOUT', 'OMP_NUM_THREADS')}
    out = subprocess.run([sys.executable, '-c', PROBE, who], env={**base, 'OPENBLAS_NUM_THREADS': '2', **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_numpy_alone_spins_and_dlcourse_quiets_the_workers():
    plain = probe('numpy')
    assert plain['spin'] > 0.03, f"OpenBLAS's workers no longer spin after a product here: {plain}"   # the premise
    quiet = probe('dlcourse')
    assert quiet['state'] == 'quieted', quiet
    assert quiet['spin'] < 0.02, quiet                       # a sleeping worker costs no CPU
    assert quiet['threads'] == 2 and not quiet['env'], quiet # thread count and environment as they were
    assert quiet['err'] < 1e-3, quiet                        # products still right (300 float32 products, |x| ~ 1)


def test_the_users_own_timeout_wins():
    user = probe('dlcourse', OPENBLAS_THREAD_TIMEOUT='28')
    assert user['state'] == 'user' and user['spin'] > 0.03, user


def test_nothing_to_quiet_on_one_thread():
    assert probe('dlcourse', OPENBLAS_NUM_THREADS='1')['state'] == 'one thread'


def test_a_forked_child_still_multiplies_right():
    "OpenBLAS restarts its workers in a forked child (its fork handler): after dlcourse restarted them once, too"
    code = ("import multiprocessing as mp, numpy as np\nimport dlcourse.engine.matmul as m\nassert m.BLAS_THREADS == 'quieted'\n"
            "def f(_):\n    a = np.arange(512 * 300, dtype=np.float64).reshape(512, 300) % 7\n"
            "    return float(np.abs(a @ a.T - np.einsum('ik,jk->ij', a, a)).max())\n"
            "if __name__ == '__main__':\n    print(max(mp.get_context('fork').Pool(2).map(f, range(4))))\n")
    base = {k: v for k, v in os.environ.items() if k != 'OPENBLAS_THREAD_TIMEOUT'}
    out = subprocess.run([sys.executable, '-c', code], env=dict(base, OPENBLAS_NUM_THREADS='2'), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.split()[-1]) == 0.0              # small integers: exact in float64


@pytest.mark.parametrize('bad', [3, 31, 4.0, True, '4'])
def test_the_timeout_is_checked(bad):
    with pytest.raises(ValueError, match='timeout must be an integer from 4 to 30'):
        matmul.quiet_blas_threads(bad)
