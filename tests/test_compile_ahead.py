"""engine.ahead: a helper process compiles the second half of a first training step's kernels while the step runs, and
kernels.jit's file lock keeps the two processes' cache entries apart. The results do not change, the main process
compiles fewer kernels, the helper is reaped, and first_steps.json still names what LeNet-5's first step compiles."""
import fcntl
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import dlcourse as dl
from dlcourse.engine import ahead as A
from dlcourse.engine.fusion import fusion
from dlcourse.kernels import config, jit as kernels_jit

# One LeNet-5 run through the Learner in a fresh process with an empty cache: batch 64 float32 with SGD, the step that
# `dlcourse train` takes first (first_steps.json has it). Prints what this process compiled (outermost kernels, in
# order), the losses of three steps and the weights' checksum, and whether a child process is left unreaped.
PROBE = r'''
import json, os, sys, time
import numpy as np
import dlcourse as dl
from dlcourse.data import DataLoader
from dlcourse.engine import ahead as A
from dlcourse.kernels import config
config.COMPILE_AHEAD = sys.argv[1] == 'ahead'
rng = np.random.default_rng(0)
x, y = rng.normal(size=(192, 1, 28, 28)).astype(np.float32), np.arange(192) % 10
model = dl.lenet5(rng=0)
opt = dl.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
losses = []
learner = dl.Learner(model, dl.CrossEntropyLoss(), opt, DataLoader(x, y, batch_size=64, shuffle=False),
                     on_batch_end=[lambda l: losses.append(l.loss)])
with A.recording() as compiled:
    learner.fit(1, progress=False)
for _ in range(300):                       # the helper is reaped in the background: give it a moment
    try: pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError: pid = None; break
    time.sleep(0.01)
checksum = float(sum(np.abs(p.data.astype(np.float64)).sum() for p in model.parameters()))
print(json.dumps(dict(compiled=compiled, losses=[float(l) for l in losses], checksum=checksum, child_left=pid is not None)))
'''


def run_probe(mode, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), DLCOURSE_PREBUILT='0')     # the compiler's cold start
    out = subprocess.run([sys.executable, '-c', PROBE, mode], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "The probe with an empty cache without the helper, with it, and with the cache the helper run left (warm)"
    plain = run_probe('plain', tmp_path_factory.mktemp('cache-plain'))
    cache = tmp_path_factory.mktemp('cache-ahead')
    return plain, run_probe('ahead', cache), run_probe('ahead', cache)


def lenet_entry():
    steps = json.loads(A.FIRST_STEPS.read_text())['steps']
    return next(s for s in steps if s['run'] == 'dlcourse train --data sample')


def test_first_steps_names_what_lenet5s_first_step_compiles(runs):
    plain = runs[0]
    assert [k[:2] for k in plain['compiled']] == [k[:2] for k in lenet_entry()['kernels']], \
        "dlcourse/engine/first_steps.json is out of date: run python tools/record_first_steps.py"
    assert plain['compiled'] == lenet_entry()['kernels']


def test_the_learners_step_is_the_recorded_one():
    "The key of the Learner's LeNet-5 step is the key `dlcourse train` recorded: the helper starts for both"
    model = dl.lenet5(rng=0)
    key = A.step_key(model, np.zeros((64, 1, 28, 28), np.float32), dl.SGD(model.parameters(), lr=0.1))
    assert key == lenet_entry()['key']


def test_the_helper_takes_kernels_off_the_main_process(runs):
    plain, ahead, _ = runs
    main_compiled = [k[1] for k in ahead['compiled']]
    assert main_compiled[0] == 'conv_act_pool_forward'           # the main process starts from the front
    assert len(main_compiled) < len(plain['compiled']), (main_compiled, plain['compiled'])
    assert 'sgd_span' not in main_compiled                        # the last kernel is the helper's first


def test_results_do_not_depend_on_the_helper(runs):
    plain, ahead, warm = runs
    assert plain['losses'] == ahead['losses'] == warm['losses']   # the same machine code: the same bits
    assert plain['checksum'] == ahead['checksum'] == warm['checksum']
    assert len(plain['losses']) == 3


def test_a_warm_cache_compiles_nothing_and_the_helper_is_reaped(runs):
    _, ahead, warm = runs
    assert warm['compiled'] == []
    assert not ahead['child_left'] and not warm['child_left']


# The cache lock: while another process holds the lock of a kernel's cache folder exclusively, a process that reads
# (looks the kernel up) or writes (saves a new version) the cache waits
LOCKED_KERNEL = r'''
import time
from dlcourse.kernels.jit import jit
@jit()
def plus_one(x): return x + 1
plus_one(1.5)                                     # looks it up in the cache, compiles, saves: each under the lock
print(time.time(), plus_one._cache_hits.get(plus_one.signatures[0]))
'''


def _holds(pid, path):
    "Has process `pid` the file `path` open?"
    try: return any(os.readlink(f'/proc/{pid}/fd/{fd}') == str(path) for fd in os.listdir(f'/proc/{pid}/fd'))
    except OSError: return False


def test_the_cache_is_read_and_written_under_the_lock(tmp_path):
    module = tmp_path / 'locked_kernel.py'
    module.write_text(LOCKED_KERNEL)
    cache = tmp_path / 'cache'
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')]))
    first = subprocess.run([sys.executable, str(module)], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    locks = list(cache.rglob('dlcourse-cache.lock'))
    assert len(locks) == 1                                         # the folder of the kernel's cache has the lock file
    for f in cache.rglob('*.nb*'): f.unlink()                      # empty the cache again, keep the lock file
    with open(locks[0], 'r+') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        child = subprocess.Popen([sys.executable, str(module)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not _holds(child.pid, locks[0].resolve()) and child.poll() is None and time.time() < deadline: time.sleep(0.01)
        assert _holds(child.pid, locks[0].resolve()), "the kernel never reached its cache's lock"
        time.sleep(0.5)
        assert child.poll() is None                                # waiting for the lock, not past it
        released = time.time()
        fcntl.flock(lock, fcntl.LOCK_UN)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-2000:]
    assert float(out.split()[0]) >= released                       # it went on only once the lock was free
    again = subprocess.run([sys.executable, str(module)], env=env, capture_output=True, text=True, timeout=300)
    assert again.stdout.split()[1] == '1'                          # the waiting process did save it: a cache hit


def test_every_kernel_reads_and_writes_its_cache_under_the_lock():
    from numba.core.dispatcher import Dispatcher
    from dlcourse.kernels import act, conv, fused, norm, optim, pool
    kernels = [v for m in (act, conv, fused, norm, optim, pool) for v in vars(m).values() if isinstance(v, Dispatcher)]
    assert len(kernels) > 20
    for k in kernels:
        assert k._cache._cache_file.save.__name__ == 'locked_save', k
        assert k._cache._cache_file.load.__name__ == 'locked_load', k
        assert k.compile.__name__ == 'hooked', k


# engine.ahead's rules, without a helper
def test_the_step_key_names_what_decides_the_kernels():
    model, x = dl.lenet5(rng=0), np.zeros((64, 1, 28, 28), np.float32)
    opt = dl.SGD(model.parameters(), lr=0.1)
    key = A.step_key(model, x, opt)
    assert A.step_key(model, x[:32], opt) != key                              # another batch size
    assert A.step_key(model, x.astype(np.float64), opt) != key                # another dtype
    with fusion(False): assert A.step_key(model, x, opt) != key               # the layers one by one
    assert A.step_key(model, x, dl.optim.Adam(model.parameters())) != key     # another optimizer
    assert A.step_key(dl.lenet5(rng=1), x, opt) == key                        # other weights: the same kernels


def test_no_helper_for_an_unknown_step_or_when_switched_off(monkeypatch):
    model, x = dl.lenet5(rng=0), np.zeros((64, 1, 28, 28), np.float32)
    opt = dl.SGD(model.parameters(), lr=0.1)
    with A.ahead(model, x[:3], opt) as helper: assert helper is None          # not in first_steps.json
    monkeypatch.setattr(config, 'COMPILE_AHEAD', False)
    monkeypatch.setattr(A, '_started', set())
    with A.ahead(model, x, opt) as helper: assert helper is None
    assert kernels_jit.compile_hook is None


def test_a_broken_record_means_no_helper(tmp_path, monkeypatch):
    model, x = dl.lenet5(rng=0), np.zeros((64, 1, 28, 28), np.float32)
    key = A.step_key(model, x, dl.SGD(model.parameters(), lr=0.1))
    bad = tmp_path / 'first_steps.json'
    monkeypatch.setattr(A, 'FIRST_STEPS', bad)
    for kernels in ([['dlcourse.kernels.conv', 'no_such_kernel', []]],
                    [['dlcourse.kernels.conv', 'gemm_nt', ['Array(float32, 2, "C") + __import__("os")']]]):
        bad.write_text(json.dumps(dict(steps=[dict(key=key, kernels=kernels)])))
        assert A._load(key) is None
    bad.write_text('{not json')
    assert A._load(key) is None
    assert A._load('another step') is None


def test_the_main_process_waits_for_a_kernel_the_helper_is_compiling(monkeypatch):
    "_before_compile: a kernel nobody took is taken; one the helper compiles is waited for until it is done"
    import mmap
    import threading
    from dlcourse.kernels.conv import gemm_nt
    helper = object.__new__(A._Helper)
    sig = ('a', 'b')
    helper.kernels, helper.index = [(gemm_nt, sig), (gemm_nt, ('c',))], {(id(gemm_nt), sig): 0, (id(gemm_nt), ('c',)): 1}
    helper.state, helper.pid = mmap.mmap(-1, 2), None
    helper._running = lambda: True
    helper._before_compile(gemm_nt, ('c',))
    assert helper.state[1] == A.TAKEN
    helper.state[0] = A.HELPER
    threading.Timer(0.3, lambda: helper.state.__setitem__(0, A.DONE)).start()
    t0 = time.perf_counter()
    helper._before_compile(gemm_nt, sig)
    assert time.perf_counter() - t0 >= 0.25 and helper.state[0] == A.DONE
    helper._before_compile(gemm_nt, ('not', 'listed'))            # not in the record: nothing to wait for


def _children(pid):
    "The process ids whose parent is `pid` (from /proc)"
    kids = []
    for stat in os.listdir('/proc'):
        if not stat.isdigit(): continue
        try: fields = open(f'/proc/{stat}/stat').read().rsplit(')', 1)[1].split()
        except OSError: continue
        if int(fields[1]) == pid: kids.append(int(stat))
    return kids


def test_a_killed_run_leaves_its_output_folder_free(tmp_path):
    """`dlcourse train` holds a lock on its output folder; the helper it forks must not keep it (nor its pipes) when the
    run is killed during its first step: a rerun into the same folder starts at once, and the helper ends soon after"""
    out = tmp_path / 'run'
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / 'cache'), DLCOURSE_PREBUILT='0')   # empty: the helper compiles for seconds
    run = subprocess.Popen([sys.executable, '-m', 'dlcourse', 'train', '--epochs', '1', '--out', str(out)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, helpers = time.time() + 120, []
    while not helpers and time.time() < deadline and run.poll() is None:
        helpers = _children(run.pid)
        time.sleep(0.02)
    assert helpers, f"no helper process appeared (exit {run.poll()})"
    assert all(open(f'/proc/{h}/cmdline', 'rb').read() == open(f'/proc/{run.pid}/cmdline', 'rb').read() for h in helpers)
    run.kill()
    run.wait()
    fd = os.open(out, os.O_RDONLY)
    try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)                     # free at once, though the helper still runs
    finally: os.close(fd)
    t0 = time.perf_counter()
    run.stderr.read()                                                        # the pipe ends with the run, not the helper
    assert time.perf_counter() - t0 < 0.5
    deadline = time.time() + 60
    while any(map(_alive, helpers)) and time.time() < deadline: time.sleep(0.05)
    assert not any(map(_alive, helpers)), "the helper outlived its run by a minute"


def _alive(pid):
    "Is process `pid` running (not gone, not a zombie)?"
    try: return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False


def test_a_refused_fork_means_no_helper(monkeypatch):
    "fork() can fail (a process limit): the step then compiles in this process, as without a helper"
    def refuse(): raise BlockingIOError(11, 'Resource temporarily unavailable')
    monkeypatch.setattr(os, 'fork', refuse)
    monkeypatch.setattr(A, '_started', set())
    model, x = dl.lenet5(rng=0), np.zeros((64, 1, 28, 28), np.float32)
    opt = dl.SGD(model.parameters(), lr=0.1)
    assert A._load(A.step_key(model, x, opt))                     # a known step: a helper would start
    fds = len(os.listdir('/proc/self/fd'))
    with A.ahead(model, x, opt) as helper: assert helper is None
    assert kernels_jit.compile_hook is None
    assert len(os.listdir('/proc/self/fd')) == fds                 # the pipe was closed again


def test_the_hook_ignores_what_it_does_not_know():
    import mmap
    from dlcourse.kernels.conv import gemm_nt
    helper = object.__new__(A._Helper)
    helper.kernels, helper.index, helper.state, helper.pid = [], {}, mmap.mmap(-1, 1), None
    helper._before_compile(gemm_nt, 'float32(float32)')           # a signature written as text: not in the record
    helper._before_compile(gemm_nt, ())


def test_an_odd_network_or_input_means_no_helper(monkeypatch):
    "Compiling ahead only saves time: a network whose key cannot be made, or an input that is no array, trains without it"
    class Odd(dl.Sequential):
        def __repr__(self): raise RuntimeError('no repr')
    monkeypatch.setattr(A, '_started', set())
    model = Odd(dl.Linear(4, 2))
    opt = dl.SGD(model.parameters(), lr=0.1)
    with A.ahead(model, np.zeros((3, 4), np.float32), opt) as helper: assert helper is None
    with A.ahead(dl.lenet5(rng=0), [[0.0] * 4], opt) as helper: assert helper is None


def test_a_lock_file_this_user_cannot_write_still_locks(tmp_path, monkeypatch):
    "In a cache shared by several users the lock file may be another's, read-only to us: flock works on a read-only file"
    path = tmp_path / 'dlcourse-cache.lock'
    path.touch()
    real_open = os.open
    def no_write(p, flags, *args):
        if flags & (os.O_RDWR | os.O_WRONLY): raise PermissionError(13, 'Permission denied', p)
        return real_open(p, flags, *args)
    monkeypatch.setattr(os, 'open', no_write)
    probe = f"import fcntl; f = open({str(path)!r}); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    with kernels_jit._flocked(str(path), fcntl.LOCK_EX):
        busy = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True)
    assert busy.returncode != 0 and 'BlockingIOError' in busy.stderr           # held while inside
    free = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True)
    assert free.returncode == 0, free.stderr                                     # and released after
