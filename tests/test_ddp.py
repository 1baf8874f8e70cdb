"""Data-parallel training: `torchrun --nproc_per_node=2 -m dlcourse train --engine torch` (gloo, two processes on this
machine) takes the same steps as one process with the same global batch, reports and writes once, and a run killed after
a checkpoint continues with --resume to the uninterrupted run's weights."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import child_env
from dlcourse.checkpoint import read_checkpoint
from dlcourse.cli import train
from test_torch_engine import engine_tol

HERE = Path(__file__).parent
ARGS = ['--engine', 'torch', '--device', 'cpu', '--model', 'mlp', '--width', '16', '--limit', '128', '--batch-size', '32',
        '--quiet']                                          # 4 steps of a global batch of 32 per epoch
STEPS_PER_EPOCH = 4


def torchrun(*args, env=None):
    """Two processes on this machine (a free port of its own: --standalone), each with one thread; a process that aborts
    prints its Python stack (faulthandler) into the stderr the assertions show"""
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=child_env(OMP_NUM_THREADS='1', PYTHONFAULTHANDLER='1', **(env or {})))


@pytest.fixture(scope='module')
def single(tmp_path_factory, torch):
    "The weights of one process after 1 and after 3 epochs"
    d = tmp_path_factory.mktemp('single')
    for epochs in (1, 3):
        train(engine='torch', device='cpu', model='mlp', width=16, limit=128, batch_size=32, epochs=epochs,
              out=d / str(epochs), progress=False)
    return {e: read_checkpoint(d / str(e) / 'checkpoint.npz') for e in (1, 3)}


def assert_same_weights(ck, ref, steps):
    assert ck.meta['epoch'] == ref.meta['epoch']
    tol = engine_tol(steps, 0.9, n=784, depth=2)
    for k, v in ref.arrays.items():
        if k == 'header': continue
        scale = np.abs(v).max()
        assert np.abs(ck.arrays[k] - v).max() <= tol * scale, (k, np.abs(ck.arrays[k] - v).max() / scale, tol)
    for a, b in zip(ck.meta['history'], ref.meta['history']):      # the metrics gathered from both processes
        assert a['train_loss'] == pytest.approx(b['train_loss'], rel=1e-5) and a['valid_accuracy'] == b['valid_accuracy']


def test_two_processes_take_the_steps_of_one(single, tmp_path):
    out = tmp_path / 'ddp'
    r = torchrun(str(HERE / 'ddp_child.py'), 'train', *ARGS, '--epochs', '1', '--out', str(out))
    assert r.returncode == 0, r.stderr[-6000:]
    # each process ended with os._exit once its output was written, without the interpreter's shutdown, where PyTorch's
    # teardown after a gloo process group now and then aborts and torchrun then fails the finished run
    assert 'atexit ran' not in r.stderr, r.stderr[-6000:]
    print(r.stdout)
    lines = r.stdout.splitlines()
    assert sum(l.startswith('data: ') for l in lines) == 1 and sum(l.startswith('epoch 1 ') for l in lines) == 1  # once
    assert 'torch engine on cpu, 2 processes' in r.stdout
    assert {p.name for p in out.iterdir()} == {'checkpoint.npz', 'curves.png', 'history.csv'}
    assert_same_weights(read_checkpoint(out / 'checkpoint.npz'), single[1], STEPS_PER_EPOCH)


def test_killed_distributed_run_resumes(single, tmp_path):
    out = tmp_path / 'ddp'
    r = torchrun(str(HERE / 'ddp_child.py'), 'train', *ARGS, '--epochs', '3', '--out', str(out), env={'DLCOURSE_KILL_AFTER': '2'})
    assert r.returncode != 0 and read_checkpoint(out / 'checkpoint.npz').meta['epoch'] == 2, r.stderr[-6000:]
    r = torchrun('-m', 'dlcourse', 'train', '--resume', '--engine', 'torch', '--out', str(out), '--quiet')
    assert r.returncode == 0, r.stderr[-6000:]
    print(r.stdout)
    assert r.stdout.splitlines()[0] == f"resumed from {out / 'checkpoint.npz'} after epoch 2, with the checkpoint's settings"
    assert [l.split()[1] for l in r.stdout.splitlines() if l.startswith('epoch ')] == ['3']
    assert_same_weights(read_checkpoint(out / 'checkpoint.npz'), single[3], 3 * STEPS_PER_EPOCH)
