"""The package as a whole: public names, import hygiene, the command line."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import dlcourse as dl

ROOT = Path(__file__).resolve().parent.parent

# The public names of the package, and the module each must be importable from.
CONTRACT = {
    'core': ['Parameter', 'Module', 'Sequential'],
    'activations': ['sigmoid', 'tanh', 'relu', 'sigmoid_grad', 'tanh_grad', 'relu_grad', 'Sigmoid', 'Tanh', 'ReLU'],
    'layers': ['Linear', 'Flatten'],
    'losses': ['MSELoss', 'softmax', 'log_softmax', 'cross_entropy', 'CrossEntropyLoss'],
    'gradcheck': ['grad_check'],
    'neuron': ['SigmoidUnit', 'SigmoidNeuron'],
    'conv': ['conv_output_size', 'conv2d', 'Conv2d'],
    'pool': ['max_pool2d', 'MaxPool2d', 'SumPool2d', 'AvgPool2d'],
    'optim': ['SGD'],
    'zoo': ['lenet5', 'alexnet', 'googlenet', 'vgg16', 'resnet18'],
    'interop': ['to_torch', 'from_torch'],
}


def test_summary_is_importable_from_its_module_and_from_dlcourse():
    from dlcourse.summary import summary
    assert dl.summary is summary and 'summary' in dl.__all__


@pytest.mark.parametrize('module', CONTRACT)
def test_contract_names(module):
    import importlib
    mod = importlib.import_module(f'dlcourse.{module}')
    for name in CONTRACT[module]:
        assert getattr(mod, name) is getattr(dl, name), name
        assert name in mod.__all__ and name in dl.__all__, name


def test_star_import_has_no_duplicates():
    assert len(dl.__all__) == len(set(dl.__all__))
    namespace = {}
    exec('from dlcourse import *', namespace)
    assert {'Linear', 'grad_check', 'sigmoid', 'gradient_descent'} <= set(namespace)


def test_import_is_light():
    "Importing dlcourse never imports torch (a test-only oracle) or matplotlib (only plots need it)"
    code = 'import sys, dlcourse; print(sorted(m for m in ("torch", "matplotlib") if m in sys.modules))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_sigmoid_is_silent_at_extremes():
    with warnings.catch_warnings(), np.errstate(all='raise'):
        warnings.simplefilter('error')
        for dtype in (np.float32, np.float64):
            x = np.array([-1000., -88.8, 0., 88.8, 1000.], dtype)
            y = dl.sigmoid(x)
            assert np.isfinite(y).all() and y[0] == 0 and y[-1] == 1
            assert np.isfinite(dl.sigmoid_grad(x)).all()
            m = dl.Sigmoid(); m(x); assert np.isfinite(m.backward(np.ones_like(x))).all()


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())', *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_cli_trains_on_the_sample_and_writes_its_outputs(tmp_path):
    r = run_cli('train', '--model', 'mlp', '--epochs', '2', '--out', str(tmp_path/'run'), '--quiet')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('data: sample, 9,000 training / 1,000 validation / 2,000 test examples, 10 classes')
    assert sum(l.startswith('epoch ') for l in lines) == 2
    final = next(l for l in lines if l.startswith('final test accuracy'))
    assert float(final.split()[3].rstrip('%,')) > 70
    assert {p.name for p in (tmp_path/'run').iterdir()} == {'checkpoint.npz', 'curves.png', 'history.csv'}
    assert (tmp_path/'run'/'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (tmp_path/'run'/'history.csv').read_text().splitlines()[0].startswith('epoch,train_loss,train_accuracy')


def test_cli_resume_continues_to_the_total(tmp_path):
    out = str(tmp_path/'run')
    assert run_cli('train', '--data', 'moons', '--epochs', '3', '--out', out, '--quiet').returncode == 0
    r = run_cli('train', '--epochs', '5', '--out', out, '--resume', '--quiet')     # --data: the checkpoint's
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"resumed from {tmp_path/'run'/'checkpoint.npz'} after epoch 3; changed from the checkpoint: --epochs 3 -> 5"
    assert [l.split()[1] for l in r.stdout.splitlines() if l.startswith('epoch ')] == ['4', '5']


def test_cli_toy_problem_is_deterministic(tmp_path):
    a = run_cli('train', '--data', 'xor', '--epochs', '20', '--out', str(tmp_path/'a'), '--quiet')
    b = run_cli('train', '--data', 'xor', '--epochs', '20', '--out', str(tmp_path/'b'), '--quiet')
    strip = lambda out: [l.split('  time')[0] for l in out.splitlines() if l.startswith('epoch')]
    assert a.returncode == 0 and strip(a.stdout) == strip(b.stdout) and strip(a.stdout)


@pytest.mark.parametrize('args,fragment', [
    (['train', '--data', 'circles'], "invalid choice: 'circles'"),
    (['train', '--epochs', '0'], 'must be positive, got 0'),
    (['train', '--lr', '-1'], 'must be positive, got -1'),
    (['train', '--batch-size', 'x'], "invalid int value: 'x'"),
    (['train', '--data', 'spirals', '--model', 'lenet5'], "model 'lenet5' needs image data"),
    (['train', '--resume', '--out', '/nonexistent/run'], '--resume: no checkpoint at /nonexistent/run/checkpoint.npz'),
    (['train', '--activation', 'swish'], "invalid choice: 'swish'"),
    (['train', '--lr', 'inf'], 'must be a finite number, got inf'),
    (['train', '--momentum', '-0.5'], 'must be at least 0, got -0.5'),
    (['train', '--seed', '-1'], 'must be at least 0, got -1'),
    (['train', '--resume', '--overwrite'], 'argument --overwrite: not allowed with argument --resume'),
    (['train', '--out', ''], '--out must not be empty'),
    (['train', '--out', '/dev/null'], '--out /dev/null is a file, not a folder'),
    (['train', '--frobnicate'], 'unrecognized arguments: --frobnicate'),
    (['fly'], "invalid choice: 'fly'"),
])
def test_cli_rejects_bad_arguments(args, fragment, tmp_path):
    "One line on stderr, exit 2, nothing on stdout and nothing written (in a fresh folder: no default runs/ either)"
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == '' and len(r.stderr.splitlines()) == 1 and fragment in r.stderr, r.stderr
    assert r.stderr.startswith(('dlcourse train: error: ', 'dlcourse: error: ')) and list(tmp_path.iterdir()) == []


def test_cli_activation_choices_are_the_registry():
    "--activation offers every activation of the registry, and the model is built with it"
    import dlcourse as dl
    from dlcourse.cli import build_model
    r = run_cli('train', '--help')
    assert r.returncode == 0 and '{' + ','.join(dl.ACTIVATIONS) + '}' in r.stdout.replace('\n', '').replace(' ', ''), r.stdout
    x_toy, x_img = np.zeros((4, 2), np.float32), np.zeros((4, 1, 28, 28), np.float32)
    for name, a in dl.ACTIVATIONS.items():
        for model, x in (('mlp', x_toy), ('mlp', x_img), ('lenet5', x_img)):
            acts = [type(m) for m in build_model(model, x, 10, name).modules() if dl.activation_of(m) is not None]
            assert acts and set(acts) == {a.layer}, (model, name, acts)
    defaults = lambda model, x: {type(m).__name__ for m in build_model(model, x, 10).modules() if dl.activation_of(m)}
    assert defaults('mlp', x_toy) == {'ReLU'} and defaults('lenet5', x_img) == {'Tanh'}


def test_console_script_installed(tmp_path):
    exe = Path(sys.executable).parent / 'dlcourse'
    r = subprocess.run([str(exe), 'train', '--data', 'separable', '--epochs', '3', '--quiet', '--out', str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'final test accuracy' in r.stdout, r.stderr


def test_kernels_run_on_tbb():
    "Numba's thread pool is TBB (kernels.config): the tbb package is a dependency on x86-64 and its library is found"
    import platform
    if platform.machine() not in ('x86_64', 'AMD64'):
        pytest.skip('the tbb package is a dependency on x86-64 only')
    env = {k: v for k, v in os.environ.items() if not k.startswith('NUMBA_THREADING_LAYER')}
    script = ('import numba, numpy as np, dlcourse as dl\n'
              'dl.ReLU()(np.ones(1 << 20, np.float32))\n'          # a parallel kernel: Numba chooses its layer now
              'print(numba.threading_layer())')
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == 'tbb', r.stdout + r.stderr
