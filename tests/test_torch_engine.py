"""`dlcourse train --engine torch`: the same training as the numba engine (same data, batches, initial weights and
update rule, so the same weights up to rounding), checkpoints that either engine resumes and the zoo reads, the same
outputs, and a one-line hint when PyTorch is missing."""
import sys

import numpy as np
import pytest

from conftest import rounding_tol
from dlcourse import zoo
from dlcourse.checkpoint import load_checkpoint, read_checkpoint
from dlcourse.cli import main, train

SMALL = dict(data='sample', model='mlp', width=16, limit=128, batch_size=32, progress=False)   # 4 steps per epoch


def engine_tol(steps, momentum, n, depth):
    """Two correct float32 trainings round each step's update differently, by about rounding_tol(n, depth) of the
    weights' scale; momentum carries each difference into the next steps, 1/(1 - momentum) times in all"""
    return steps / (1 - momentum) * rounding_tol(np.float32, n=n, depth=depth)


def arrays(path):
    ck = read_checkpoint(path)
    return {k: v for k, v in ck.arrays.items() if k != 'header'}, ck


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_torch_engine_trains_as_the_numba_engine(torch, optimizer, tmp_path):
    _, numba_test = train(**SMALL, epochs=2, optimizer=optimizer, out=tmp_path / 'numba')
    learner, torch_test = train(**SMALL, epochs=2, optimizer=optimizer, out=tmp_path / 'torch', engine='torch', device='cpu')
    a, ck_a = arrays(tmp_path / 'numba' / 'checkpoint.npz')
    b, ck_b = arrays(tmp_path / 'torch' / 'checkpoint.npz')
    assert a.keys() == b.keys() and ck_a.hyper.keys() == ck_b.hyper.keys()
    assert ck_a.hyper == pytest.approx(ck_b.hyper)                     # Adam's step count too
    # Adam divides by sqrt(v̂) + eps: the first steps amplify differences in small gradients, up to 1 / (1 - beta2) ...
    steps, amplify = 8, 1 if optimizer == 'sgd' else 10
    tol = engine_tol(steps, 0.9, n=784, depth=2) * amplify
    for k in a:
        if k.startswith('model/'):
            scale = np.abs(a[k]).max()
            assert np.abs(a[k] - b[k]).max() <= tol * scale, (k, np.abs(a[k] - b[k]).max() / scale, tol)
    ha, hb = ck_a.meta['history'], ck_b.meta['history']
    assert [r['epoch'] for r in hb] == [1, 2] and ha[0].keys() == hb[0].keys()
    for ra, rb in zip(ha, hb):
        for key in ('train_loss', 'valid_loss'): assert rb[key] == pytest.approx(ra[key], rel=1e-4)
    assert torch_test['loss'] == pytest.approx(numba_test['loss'], rel=1e-4)
    assert {p.name for p in (tmp_path / 'torch').iterdir()} == {'checkpoint.npz', 'curves.png', 'history.csv'}


def test_either_engine_resumes_the_other_and_the_zoo_reads_it(torch, tmp_path, capsys):
    out = tmp_path / 'run'
    common = ['--model', 'resnet18', '--width', '2', '--limit', '8', '--batch-size', '4', '--out', str(out), '--quiet']
    assert main(['train', *common, '--epochs', '1', '--engine', 'torch', '--optimizer', 'adam', '--schedule', 'cosine']) == 0
    assert 'torch engine on cpu' in capsys.readouterr().out
    assert main(['train', '--resume', '--out', str(out), '--epochs', '2', '--quiet']) == 0                     # numba
    assert main(['train', '--resume', '--out', str(out), '--epochs', '3', '--engine', 'torch', '--quiet']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[1] for l in lines if l.startswith('epoch ')] == ['2', '3']
    ck = read_checkpoint(out / 'checkpoint.npz')
    assert ck.meta['epoch'] == 3 and ck.hyper['step'] == 3 * 2 and len((out / 'history.csv').read_text().splitlines()) == 4
    net = zoo.resnet18(10, in_channels=1, small_input=True, width=2)
    load_checkpoint(out / 'checkpoint.npz', net)            # the zoo's model reads the weights and batch-norm averages
    assert not np.allclose(net.bn1.running_mean, 0)          # trained statistics came back from PyTorch
    net.eval()
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    from dlcourse.interop import to_torch
    tm = to_torch(net).eval()
    np.testing.assert_allclose(net(x), tm(torch.from_numpy(x)).detach().numpy(), rtol=0,
                               atol=rounding_tol(np.float32, n=9 * 16, depth=18) * np.abs(net(x)).max())


def test_without_torch_the_hint_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, 'torch', None)           # import torch fails, as where it is not installed
    try: status = main(['train', '--engine', 'torch', '--quiet'])
    except SystemExit as e: status = e.code
    out, err = capsys.readouterr()
    assert status == 2 and out == '' and err == ('dlcourse train: error: --engine torch needs PyTorch, which is not '
                                                 'installed: pip install "dlcourse[torch]"\n')
    assert list(tmp_path.iterdir()) == []


def test_device_cuda_without_a_gpu(torch, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    status = main(['train', '--engine', 'torch', '--device', 'cuda', '--quiet'])
    out, err = capsys.readouterr()
    assert status == 2 and len(err.splitlines()) == 1 and 'PyTorch finds no GPU here' in err and list(tmp_path.iterdir()) == []


def test_start_refuses_bad_arguments(torch):
    from dlcourse import torch_engine
    with pytest.raises(ValueError, match="device must be one of"): torch_engine.start('tpu')
    with pytest.raises(ValueError, match='world must be a positive integer'): torch_engine.start('cpu', 0)
    assert torch_engine.start('cpu').device == 'cpu'
