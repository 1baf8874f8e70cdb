"""The package as a whole: public names, import hygiene, the command line."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import dlcourse as dl

ROOT = Path(__file__).resolve().parent.parent

# DESIGN.md §3 names that exist so far, and the module each must be importable from.
CONTRACT = {
    'core': ['Parameter', 'Module', 'Sequential'],
    'activations': ['sigmoid', 'tanh', 'relu', 'sigmoid_grad', 'tanh_grad', 'relu_grad', 'Sigmoid', 'Tanh'],
    'layers': ['Linear', 'Flatten'],
    'losses': ['MSELoss'],
    'gradcheck': ['grad_check'],
    'neuron': ['SigmoidNeuron', 'TwoLayerSigmoidNet'],
}


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


def run_cli(*args):
    return subprocess.run([sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())', *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_trains_and_reports():
    r = run_cli('train', 'moons', '--epochs', '100', '--n', '200', '--seed', '1')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('training moons: 200 points')
    assert sum(l.startswith('epoch') for l in lines) == 10
    assert lines[-1].startswith('final error: test MSE')
    accuracy = float(lines[-1].split('test accuracy ')[1].split('%')[0])
    assert accuracy > 90


def test_cli_is_deterministic():
    a, b = run_cli('train', 'xor', '--epochs', '20'), run_cli('train', 'xor', '--epochs', '20')
    assert a.returncode == 0 and a.stdout == b.stdout


@pytest.mark.parametrize('args,fragment', [
    (['train', 'circles'], "invalid choice: 'circles'"),
    (['train', '--epochs', '0'], 'epochs must be a positive integer'),
    (['train', '--lr', '-1'], 'lr must be a positive number'),
    (['train', '--hidden', 'x'], "invalid int value: 'x'"),
])
def test_cli_rejects_bad_arguments(args, fragment):
    r = run_cli(*args)
    assert r.returncode == 2 and fragment in r.stderr, r.stderr


def test_console_script_installed():
    exe = Path(sys.executable).parent / 'dlcourse'
    r = subprocess.run([str(exe), 'train', 'separable', '--epochs', '5', '--n', '50'], capture_output=True, text=True)
    assert r.returncode == 0 and 'final error' in r.stdout, r.stderr
