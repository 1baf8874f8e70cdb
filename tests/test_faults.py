"""Faults: a run killed at any point (also mid-checkpoint-write) resumes to the uninterrupted result, with the Learner
and with `dlcourse train --resume`; a full disk keeps the previous checkpoint; results are bit-identical for a fixed
seed, in one process and across processes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import child_env
from fault_child import make_learner

HERE = Path(__file__).parent
CHILD = [sys.executable, str(HERE / 'fault_child.py'), 'train']
EPOCHS = 4


def run(ckpt, *flags, check=True):
    return subprocess.run([*CHILD, str(ckpt), str(EPOCHS), *flags], check=check, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "Final weights and wall time of an uninterrupted run"
    d = tmp_path_factory.mktemp('reference')
    start = time.perf_counter()
    run(d / 'ck.npz')
    return np.load(str(d / 'ck.npz') + '.final.npy'), time.perf_counter() - start


def kill_then_resume(ckpt, delay=None, mid_write_epoch=None):
    "Start a run, SIGKILL it (after `delay` s, or while it writes the checkpoint of epoch `mid_write_epoch`), resume it"
    flags = ['--slow-write'] if mid_write_epoch else []
    p = subprocess.Popen([*CHILD, str(ckpt), str(EPOCHS), *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker, writes_seen, deadline = Path(str(ckpt) + '.writing'), 0, time.monotonic() + 120
    if mid_write_epoch:
        while writes_seen < mid_write_epoch and time.monotonic() < deadline and p.poll() is None:
            if marker.exists():
                writes_seen += 1
                if writes_seen == mid_write_epoch: break
                while marker.exists() and p.poll() is None: time.sleep(0.005)
            time.sleep(0.005)
        assert writes_seen == mid_write_epoch, f"never saw checkpoint write {mid_write_epoch}: {p.stderr.read()}"
    else:
        time.sleep(delay)
    killed = p.poll() is None
    p.send_signal(signal.SIGKILL); p.wait()
    marker.unlink(missing_ok=True)
    leftovers = [f for f in os.listdir(ckpt.parent) if f.endswith('.tmp')]
    if ckpt.exists(): make_learner(seed=42).load(ckpt)          # whatever is there must load
    run(ckpt, '--resume')
    return killed, leftovers


@pytest.mark.parametrize('epoch', [1, 2, 3])
def test_killed_during_checkpoint_write(tmp_path, reference, epoch):
    ckpt = tmp_path / 'ck.npz'
    killed, leftovers = kill_then_resume(ckpt, mid_write_epoch=epoch)
    assert killed
    np.testing.assert_array_equal(np.load(str(ckpt) + '.final.npy'), reference[0])


@pytest.mark.parametrize('fraction', [0.1, 0.3, 0.5, 0.7, 0.9])
def test_killed_at_random_points(tmp_path, reference, fraction):
    "Kill points spread over the run (start-up included): the resumed result is the uninterrupted one"
    ckpt = tmp_path / 'ck.npz'
    kill_then_resume(ckpt, delay=fraction * reference[1])
    np.testing.assert_array_equal(np.load(str(ckpt) + '.final.npy'), reference[0])


def test_disk_full_keeps_previous_checkpoint(tmp_path):
    "A real write error from the kernel (file size limit, like a full disk) during a checkpoint write"
    script = f'''
import resource, signal, sys, os
from fault_child import make_learner
l = make_learner()
l.fit(1, checkpoint={str(tmp_path / "ck.npz")!r}, progress=False, log=False, plot=False)
before = open({str(tmp_path / "ck.npz")!r}, 'rb').read()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 3, resource.RLIM_INFINITY))
try:
    l.fit(1, checkpoint={str(tmp_path / "ck.npz")!r}, progress=False, log=False, plot=False)
except OSError as e:
    print('ERROR', e)
assert open({str(tmp_path / "ck.npz")!r}, 'rb').read() == before
print('FILES', sorted(os.listdir({str(tmp_path)!r})))
'''
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120, env=child_env())
    assert r.returncode == 0, r.stderr
    assert 'ERROR [Errno 27] could not write' in r.stdout and 'File too large; the previous file there is intact' in r.stdout
    assert "FILES ['ck.npz']" in r.stdout


def test_bit_identical_across_processes(tmp_path, reference):
    "The same seed (and thread count) in another process: the same bits"
    run(tmp_path / 'again.npz')
    np.testing.assert_array_equal(np.load(str(tmp_path / 'again.npz') + '.final.npy'), reference[0])


CLI = [sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())', 'train']


@pytest.mark.parametrize('after', [1, 17])
def test_cli_killed_then_resumed_equals_uninterrupted(tmp_path, after):
    "`dlcourse train` killed (SIGKILL: no cleanup) after epoch `after`, then `--resume` and no other flag: the same weights"
    args = ['--data', 'moons', '--epochs', '40', '--quiet']
    run = lambda *a: subprocess.run([*CLI, *a], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert run(*args, '--out', str(tmp_path / 'straight')).returncode == 0
    p = subprocess.Popen([*CLI, *args, '--out', str(tmp_path / 'killed')], cwd=tmp_path, env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:                                      # stdout is line-buffered: each epoch's line as it ends
        if line.startswith(f'epoch {after} '): break
    p.send_signal(signal.SIGKILL); p.wait(); p.stdout.close()
    ckpt = tmp_path / 'killed' / 'checkpoint.npz'
    with np.load(ckpt) as f: epoch = json.loads(str(f['header']))['meta']['epoch']
    assert after <= epoch < 40                                   # killed while training, a good checkpoint behind
    r = run('--resume', '--out', str(tmp_path / 'killed'), '--quiet')
    assert r.returncode == 0 and f'after epoch {epoch}, with the checkpoint\'s settings' in r.stdout, r.stderr
    with np.load(tmp_path / 'straight' / 'checkpoint.npz') as a, np.load(ckpt) as b:
        for k in a.files:
            if k != 'header': np.testing.assert_array_equal(a[k], b[k], err_msg=k)
