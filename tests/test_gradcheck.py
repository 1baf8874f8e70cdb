"""Every layer of the package passes a float64 gradient check at < 1e-7 (central differences, dlcourse.grad_check).

Cases come from CASES below and from a `GRAD_CASES` dict in any other tests/test_*.py module (so each lesson's tests
register their own layers). Together they must cover every Module subclass dlcourse exports: a new layer without a gradient
check fails `test_every_layer_has_a_case`.
"""
import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest

import dlcourse as dl

X = np.random.default_rng(0).normal(size=(4, 6))

# name -> (module factory, input, target for losses)
CASES = {
    'Linear': lambda: (dl.Linear(6, 3, rng=1), X, None),
    'Linear-nobias': lambda: (dl.Linear(6, 3, bias=False, rng=1), X, None),
    'Sigmoid': lambda: (dl.Sigmoid(), 3 * X, None),
    'Tanh': lambda: (dl.Tanh(), 2 * X, None),
    'Flatten': lambda: (dl.Flatten(), X.reshape(4, 2, 3, 1), None),
    'MSELoss': lambda: (dl.MSELoss(), X, np.random.default_rng(1).normal(size=X.shape)),
    'MSELoss-sum': lambda: (dl.MSELoss('sum'), X, np.random.default_rng(2).normal(size=X.shape)),
    'Sequential': lambda: (dl.Sequential(dl.Linear(6, 5, rng=1), dl.Tanh(), dl.Linear(5, 4, rng=2), dl.Sigmoid()), X, None),
}
for _path in sorted(Path(__file__).parent.glob('test_*.py')):
    if _path.stem != 'test_gradcheck':
        CASES.update({f"{_path.stem[5:]}:{k}": v for k, v in getattr(importlib.import_module(_path.stem), 'GRAD_CASES', {}).items()})
ABSTRACT = {dl.Module, dl.Loss, dl.Elementwise, dl.Sliding}   # base classes: their subclasses have cases


def exported_modules():
    return {obj for name in dl.__all__ if inspect.isclass(obj := getattr(dl, name)) and issubclass(obj, dl.Module)}


def test_every_layer_has_a_case():
    covered = {type(factory()[0]) for factory in CASES.values()}
    missing = exported_modules() - covered - ABSTRACT
    assert not missing, f"add a gradient check case for {sorted(c.__name__ for c in missing)}"


@pytest.mark.parametrize('name', CASES)
def test_grad_check(name):
    module, x, target = CASES[name]()
    result = dl.grad_check(module, x, target=target)
    assert set(result) == {'x'} | {n for n, _ in module.named_parameters()}
    assert result.max < 1e-7, f"{name}: {result}"


@pytest.mark.parametrize('name', CASES)
def test_grad_check_leaves_the_module_alone(name):
    module, x, target = CASES[name]()
    before = {k: v.copy() for k, v in module.state_dict().items()}
    dl.grad_check(module, x, target=target)
    assert module.dtype in (None, np.float32)          # not converted to float64
    for k, v in module.state_dict().items(): np.testing.assert_array_equal(v, before[k])


def test_grad_check_catches_wrong_gradients():
    class HalfLinear(dl.Linear):
        def backward(self, dout):
            dx = super().backward(dout)
            self.weight.grad *= 0.5                        # wrong weight gradient, right input gradient
            return dx

    class NoBiasGrad(dl.Linear):
        def backward(self, dout):
            dx = super().backward(dout)
            self.bias.grad[...] = 0
            return dx

    r = dl.grad_check(HalfLinear(6, 3, rng=0), X)
    assert r['x'] < 1e-7 and r['weight'] > 0.1
    assert dl.grad_check(NoBiasGrad(6, 3, rng=0), X)['bias'] > 0.1


def test_grad_check_functions_and_spot_checks():
    r = dl.grad_check(dl.tanh, X, backward=lambda x, g: g * dl.tanh_grad(x))
    assert r.max < 1e-7
    wrong = dl.grad_check(dl.tanh, X, backward=lambda x, g: g * dl.sigmoid_grad(x))
    assert wrong.max > 0.1
    big = dl.Linear(50, 40, rng=0)
    r = dl.grad_check(big, np.random.default_rng(3).normal(size=(8, 50)), n_checks=30)
    assert r.max < 1e-7


def test_lecture_net_matches_modules_over_many_steps():
    "The literal backprop rules and the modules stay equal over a whole online training run"
    X, T = dl.make_xor()
    rng = np.random.default_rng(4)
    W_hid, b_hid, W_out, b_out = rng.normal(size=(3, 2)), np.zeros(3), rng.normal(size=(1, 3)), np.zeros(1)
    model = dl.Sequential(dl.Linear(2, 3, dtype=np.float64), dl.Sigmoid(), dl.Linear(3, 1, dtype=np.float64), dl.Sigmoid())
    model.load_state_dict({'0.weight': W_hid, '0.bias': b_hid, '2.weight': W_out, '2.bias': b_out})
    loss_fn, alpha = dl.MSELoss('sum'), 0.7
    for p in np.random.default_rng(0).integers(0, 4, 200):
        x, t = X[p], T[p:p + 1]                         # the lecture's rules, one pattern (lesson 02)
        hidden = dl.sigmoid(b_hid + W_hid @ x)
        y = dl.sigmoid(b_out + W_out @ hidden)
        delta_out = y * (1 - y) * (t - y)
        delta_hid = hidden * (1 - hidden) * (W_out.T @ delta_out)
        W_out += alpha * np.outer(delta_out, hidden); b_out += alpha * delta_out
        W_hid += alpha * np.outer(delta_hid, x); b_hid += alpha * delta_hid
        model.zero_grad()
        loss_fn(model(X[p:p + 1]), T[p:p + 1, None])
        model.backward(loss_fn.backward())
        for w in model.parameters(): w.data -= alpha / 2 * w.grad
    np.testing.assert_allclose(model[0].weight.data, W_hid, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model[2].weight.data, W_out, rtol=1e-10, atol=1e-12)
