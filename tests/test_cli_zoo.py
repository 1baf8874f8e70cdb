"""`dlcourse train` with every network of the zoo, Adam and the schedules: one short epoch each on the sample (--limit), the
checkpoint read back by the zoo's builders, the resume rules of the new options, and bad input to each of them."""
import json
import subprocess
import sys

import numpy as np
import pytest

import dlcourse as dl
from dlcourse import zoo
from dlcourse.checkpoint import load_checkpoint
from dlcourse.cli import main, train


def run(args, capsys):
    "`dlcourse ARGS` in this process: (exit status, stdout, stderr)"
    try: status = main(args)
    except SystemExit as e: status = e.code                # argparse's errors, --version
    out, err = capsys.readouterr()
    return status, out, err


# the zoo's own builder with the settings `dlcourse train` chose, as a student would rebuild it to load the weights
REBUILT = {
    'mlp': None,
    'lenet5': lambda: zoo.lenet5(10),
    'alexnet': lambda: zoo.alexnet(10, in_channels=1),
    'googlenet': lambda: zoo.googlenet(10, in_channels=1),
    'vgg16': lambda: zoo.vgg16(10, in_channels=1, small_input=True, width=2),
    'resnet18': lambda: zoo.resnet18(10, in_channels=1, small_input=True, width=2),
}


@pytest.mark.parametrize('model', list(REBUILT))
def test_every_model_trains_one_short_epoch(model, tmp_path, capsys):
    out = tmp_path / model
    width = ['--width', '2'] if model in ('vgg16', 'resnet18', 'mlp') else []
    n = 2 if model == 'alexnet' else 8                      # AlexNet reads 227x227 images: 66 times the pixels
    status, stdout, err = run(['train', '--model', model, *width, '--limit', str(n), '--batch-size', str(n // 2),
                               '--epochs', '1', '--out', str(out), '--quiet'], capsys)
    assert status == 0, err
    lines = stdout.splitlines()
    assert lines[0] == f'data: sample, {n} training / {n} validation / {n} test examples, 10 classes'
    assert lines[1].startswith(f'model: {model}') and 'numba engine' in lines[1]
    assert sum(l.startswith('epoch 1 ') for l in lines) == 1 and lines[-2].startswith('final test accuracy')
    assert {p.name for p in out.iterdir()} == {'checkpoint.npz', 'curves.png', 'history.csv'}
    assert len((out / 'history.csv').read_text().splitlines()) == 2
    if REBUILT[model] is not None:                         # the zoo's builder reads the weights back
        net = REBUILT[model]()
        meta = load_checkpoint(out / 'checkpoint.npz', net)
        assert meta['epoch'] == 1 and meta['info']['model'] == model


def test_adam_and_the_step_schedule_set_the_rate_of_each_epoch(tmp_path, capsys):
    learner, _ = train('sample', 'mlp', epochs=3, optimizer='adam', schedule='step', lr=0.01, width=8, limit=32,
                       batch_size=16, out=tmp_path / 'run', progress=False)
    assert isinstance(learner.optimizer, dl.Adam) and learner.optimizer.hyper['step'] == 3 * 2
    assert learner.optimizer.lr == pytest.approx(0.01 * 0.1 ** 2)          # step_size = 3 // 3: x0.1 after epochs 1, 2
    assert 'Adam lr 0.01 (step schedule from 0.01)' in capsys.readouterr().out
    # resumed with a larger total, the cosine of another run restarts from the base rate of the epochs done
    learner, _ = train(epochs=4, out=tmp_path / 'run', resume=True, progress=False)
    assert learner.epoch == 4 and learner.optimizer.lr == pytest.approx(0.01 * 0.1 ** 3)
    info = json.loads(np.load(tmp_path / 'run' / 'checkpoint.npz')['header'].item())['meta']['info']
    assert info == dict(data='sample', model='mlp', activation='relu', seed=0, width=8, optimizer='adam', schedule='step',
                        limit=32, epochs=4, batch_size=16, lr=0.01)


@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('resume') / 'run'
    train('sample', 'resnet18', epochs=1, width=2, limit=8, batch_size=4, schedule='cosine', out=out, progress=False)
    return out


@pytest.mark.parametrize('args, fragment', [
    (['--model', 'vgg16'], '--resume: {ckpt} is a run with --model resnet18, not --model vgg16'),
    (['--width', '4'], 'is a run with --width 2, not --width 4'),
    (['--optimizer', 'adam'], 'is a run with --optimizer sgd, not --optimizer adam'),
    (['--schedule', 'step'], 'is a run with --schedule cosine, not --schedule step'),
    (['--limit', '16'], 'is a run with --limit 8, not --limit 16'),
])
def test_resume_refuses_another_run(small_run, args, fragment, capsys):
    status, out, err = run(['train', '--resume', '--out', str(small_run), *args, '--quiet'], capsys)
    assert status == 2 and out == '' and len(err.splitlines()) == 1
    assert fragment.format(ckpt=small_run / 'checkpoint.npz') in err, err


def test_resume_overrides_the_rate_and_says_so(small_run, capsys):
    status, out, err = run(['train', '--resume', '--out', str(small_run), '--epochs', '2', '--lr', '0.01', '--quiet'], capsys)
    assert status == 0, err
    assert out.splitlines()[0] == (f"resumed from {small_run / 'checkpoint.npz'} after epoch 1; changed from the checkpoint: "
                                   "--epochs 1 -> 2, --lr 0.05 -> 0.01")
    assert 'SGD lr 0.005, momentum 0.9 (cosine schedule from 0.01)' in out      # epoch 2 of 2: half way down the cosine


@pytest.mark.parametrize('args, fragment', [
    (['--model', 'lenet7'], "argument --model: invalid choice: 'lenet7'"),
    (['--width', '0'], 'argument --width: must be positive, got 0'),
    (['--width', '2.5'], "argument --width: invalid int value: '2.5'"),
    (['--model', 'lenet5', '--width', '8'], "--width: model 'lenet5' has no width (only mlp, vgg16, resnet18 have one)"),
    (['--width', '8'], "--width: model 'lenet5' has no width"),                      # lenet5: the default for images
    (['--model', 'googlenet', '--activation', 'tanh'], "--activation: model 'googlenet' has ReLU built in"),
    (['--model', 'resnet18', '--data', 'moons'], "model 'resnet18' needs image data"),
    (['--optimizer', 'rmsprop'], "argument --optimizer: invalid choice: 'rmsprop'"),
    (['--optimizer', 'adam', '--momentum', '0.5'], "--momentum is SGD's: --optimizer adam keeps running averages"),
    (['--schedule', 'linear'], "argument --schedule: invalid choice: 'linear'"),
    (['--limit', '0'], 'argument --limit: must be positive, got 0'),
    (['--limit', 'all'], "argument --limit: invalid int value: 'all'"),
    (['--engine', 'jax'], "argument --engine: invalid choice: 'jax'"),
    (['--device', 'tpu'], "argument --device: invalid choice: 'tpu'"),
    (['--device', 'cuda'], '--device is for --engine torch'),
])
def test_bad_new_options_are_one_line_and_exit_2(args, fragment, tmp_path, capsys, monkeypatch):
    "One line on stderr, exit 2, nothing on stdout and nothing written (in a fresh folder: no default runs/ either)"
    monkeypatch.chdir(tmp_path)
    status, out, err = run(['train', *args], capsys)
    assert status == 2 and out == '' and len(err.splitlines()) == 1 and fragment in err, err
    assert err.startswith('dlcourse train: error: ') and list(tmp_path.iterdir()) == []


def test_batch_must_split_evenly_over_the_processes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('WORLD_SIZE', '2')
    status, out, err = run(['train', '--model', 'mlp', '--quiet'], capsys)
    assert status == 2 and 'several processes (torchrun) need --engine torch' in err
    status, out, err = run(['train', '--engine', 'torch', '--batch-size', '63', '--quiet'], capsys)
    assert status == 2 and '--batch-size 63 must be a multiple of the 2 processes' in err and list(tmp_path.iterdir()) == []


def test_version_and_python_m(capsys):
    status, out, _ = run(['--version'], capsys)
    assert status == 0 and out == f'dlcourse {dl.__version__}\n'
    r = subprocess.run([sys.executable, '-m', 'dlcourse', 'train', '--help'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and '--model {mlp,lenet5,alexnet,googlenet,vgg16,resnet18}' in r.stdout
    for what in ('small-input stem', 'resizes each batch to 227x227', 'pads them with', 'torchrun --nproc_per_node=N'):
        assert what in ' '.join(r.stdout.split()), what


def test_inputs_are_adapted_as_help_says():
    from dlcourse.cli import build_model, input_transform
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    pad = input_transform('vgg16', x.shape)(x)
    assert pad.shape == (2, 1, 32, 32) and (pad[:, :, 2:30, 2:30] == x).all() and pad.sum() == pytest.approx(x.sum())
    big = input_transform('alexnet', x.shape)(x)
    assert big.shape == (2, 1, 227, 227) and big.dtype == np.float32
    for model in ('mlp', 'lenet5', 'googlenet', 'resnet18'): assert input_transform(model, x.shape) is None
    assert build_model('resnet18', x, 10, width=2).conv1.kernel_size == (3, 3)          # the small-input stem


def test_resize_matches_torch_bilinear(torch):
    from dlcourse.cli import input_transform
    x = np.random.default_rng(1).random((2, 1, 28, 28)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(227, 227), mode='bilinear', align_corners=False)
    # PyTorch computes the source coordinate (up to 28) in float32, we in float64: a coordinate off by up to 2 * 28 eps,
    # times the largest slope between neighbours (1, inputs in [0, 1)), plus the rounding of the 4-term weighted sum
    np.testing.assert_allclose(input_transform('alexnet', x.shape)(x), want.numpy(), rtol=0,
                               atol=(2 * 28 + 8) * np.finfo(np.float32).eps)
