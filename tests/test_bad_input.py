"""Bad input raises ValueError or TypeError with a message naming the argument, before any computation.

Each case is (description, call, exception type, fragment the message must contain).
"""
import numpy as np
import pytest

import dlcourse as dl

f32 = lambda *shape: np.ones(shape, np.float32)
f64 = lambda *shape: np.ones(shape, np.float64)


def used(module, x):
    "module after one forward pass on x"
    module(x)
    return module


def loss_after(loss, y, t):
    loss(y, t)
    return loss


CASES = [
    # Linear: wrong shape, ndim, dtype, type
    ('Linear wrong width', lambda: dl.Linear(3, 2)(f32(4, 5)), ValueError, 'x must have shape (N, 3)'),
    ('Linear 1-D input', lambda: dl.Linear(3, 2)(f32(3)), ValueError, 'x[None] for a single example'),
    ('Linear 3-D input', lambda: dl.Linear(3, 2)(f32(2, 3, 1)), ValueError, 'x must have shape (N, 3) (2-D)'),
    ('Linear int input', lambda: dl.Linear(3, 2)(np.ones((2, 3), int)), TypeError, 'x must have dtype float32 or float64'),
    ('Linear object input', lambda: dl.Linear(3, 2)(np.ones((2, 3), object)), TypeError, 'got object'),
    ('Linear list input', lambda: dl.Linear(3, 2)([[1., 2., 3.]]), TypeError, 'x must be a numpy.ndarray, got list'),
    ('Linear dtype mismatch', lambda: dl.Linear(3, 2)(f64(2, 3)), TypeError, 'x has dtype float64, expected float32'),
    ('Linear bad size', lambda: dl.Linear(0, 2), ValueError, 'in_features must be a positive integer'),
    ('Linear float size', lambda: dl.Linear(3, 2.5), TypeError, 'out_features must be a positive integer'),
    ('Linear bad dtype', lambda: dl.Linear(3, 2, dtype=np.int32), TypeError, 'dtype must be float32 or float64'),
    ('Linear bad rng', lambda: dl.Linear(3, 2, rng='x'), TypeError, 'rng must be None'),
    # backward before forward, wrong dout
    ('Linear backward first', lambda: dl.Linear(3, 2).backward(f32(4, 2)), ValueError, 'before forward()'),
    ('Sigmoid backward first', lambda: dl.Sigmoid().backward(f32(4, 2)), ValueError, 'before forward()'),
    ('Tanh backward first', lambda: dl.Tanh().backward(f32(4, 2)), ValueError, 'before forward()'),
    ('Flatten backward first', lambda: dl.Flatten().backward(f32(4, 2)), ValueError, 'before forward()'),
    ('MSELoss backward first', lambda: dl.MSELoss().backward(), ValueError, 'before forward()'),
    ('Sequential backward first', lambda: dl.Sequential(dl.Linear(2, 2)).backward(f32(1, 2)), ValueError, 'before forward()'),
    ('Linear dout shape', lambda: used(dl.Linear(3, 2), f32(4, 3)).backward(f32(4, 3)), ValueError, 'dout must have shape (4, 2)'),
    ('Linear dout dtype', lambda: used(dl.Linear(3, 2), f32(4, 3)).backward(f64(4, 2)), TypeError, 'dout has dtype float64'),
    ('Sigmoid dout shape', lambda: used(dl.Sigmoid(), f32(4, 3)).backward(f32(3, 4)), ValueError, 'dout must have shape (4, 3)'),
    ('Tanh dout int', lambda: used(dl.Tanh(), f32(2)).backward(np.ones(2, int)), TypeError, 'dout must have dtype'),
    ('Flatten dout shape', lambda: used(dl.Flatten(), f32(2, 3, 4)).backward(f32(2, 3, 4)), ValueError, 'dout must have shape (2, 12)'),
    # activations
    ('Sigmoid int input', lambda: dl.Sigmoid()(np.arange(3)), TypeError, 'x must have dtype'),
    ('Tanh list input', lambda: dl.Tanh()([1.0]), TypeError, 'x must be a numpy.ndarray'),
    ('sigmoid string', lambda: dl.sigmoid('1'), TypeError, 'x must be a real number'),
    ('relu bool', lambda: dl.relu(np.array([True])), TypeError, 'got dtype bool'),
    ('tanh_grad complex', lambda: dl.tanh_grad(np.array([1j])), TypeError, 'x must be a real number'),
    ('Flatten scalar', lambda: dl.Flatten()(np.float32(1.0)), TypeError, 'x must be a numpy.ndarray'),
    # losses
    ('MSELoss shape mismatch', lambda: dl.MSELoss()(f32(4, 1), f32(4)), ValueError, 'target must have shape (4, 1)'),
    ('MSELoss NaN target', lambda: dl.MSELoss()(f32(2), np.array([1., np.nan], np.float32)), ValueError, 'target contains NaN'),
    ('MSELoss int target', lambda: dl.MSELoss()(f32(2), np.ones(2, int)), TypeError, 'target must have dtype'),
    ('MSELoss list output', lambda: dl.MSELoss()([1.], f32(1)), TypeError, 'output must be a numpy.ndarray'),
    ('MSELoss reduction', lambda: dl.MSELoss('avg'), ValueError, "reduction must be one of ['mean', 'sum']"),
    ('MSELoss dout', lambda: loss_after(dl.MSELoss(), f32(2), f32(2)).backward('1'), TypeError, 'dout must be a finite number'),
    # Module API
    ('Sequential non-module', lambda: dl.Sequential(dl.Linear(2, 2), np.tanh), TypeError, 'layer 1 must be a Module'),
    ('Sequential append', lambda: dl.Sequential().append(3), TypeError, 'layer must be a Module'),
    ('Parameter int', lambda: dl.Parameter(np.ones(3, int)), TypeError, 'data must have dtype float32 or float64'),
    ('Parameter list', lambda: dl.Parameter([1.0]), TypeError, 'data must be a numpy.ndarray'),
    ('astype int', lambda: dl.Linear(2, 2).astype(np.int64), TypeError, 'dtype must be float32 or float64'),
    ('load missing key', lambda: dl.Linear(2, 2).load_state_dict({'weight': f32(2, 2)}), ValueError, "missing keys ['bias']"),
    ('load unexpected key', lambda: dl.Linear(2, 2).load_state_dict({'weight': f32(2, 2), 'bias': f32(2), 'x': f32(1)}),
     ValueError, "unexpected keys ['x']"),
    ('load wrong shape', lambda: dl.Linear(2, 2).load_state_dict({'weight': f32(3, 2), 'bias': f32(2)}), ValueError,
     "state['weight'] has shape (3, 2), but the module expects (2, 2)"),
    ('load NaN', lambda: dl.Linear(2, 2).load_state_dict({'weight': np.full((2, 2), np.nan), 'bias': f32(2)}), ValueError,
     "state['weight'] contains NaN"),
    ('load strings', lambda: dl.Linear(1, 1).load_state_dict({'weight': np.array([['a']]), 'bias': f32(1)}), TypeError,
     "state['weight'] must be a numeric array"),
    ('load not a mapping', lambda: dl.Linear(2, 2).load_state_dict([('weight', f32(2, 2))]), TypeError, 'state must be a mapping'),
    # grad_check
    ('grad_check not callable', lambda: dl.grad_check(3, f64(2)), TypeError, 'f must be a Module or a callable'),
    ('grad_check function without backward', lambda: dl.grad_check(np.tanh, f64(2)), TypeError, 'backward is required'),
    ('grad_check loss without target', lambda: dl.grad_check(dl.MSELoss(), f64(2)), ValueError, 'target is required'),
    ('grad_check NaN input', lambda: dl.grad_check(dl.Tanh(), np.array([np.nan])), ValueError, 'x contains NaN'),
    ('grad_check eps', lambda: dl.grad_check(dl.Tanh(), f64(2), eps=0), ValueError, 'eps must be a number in (0, 1)'),
    ('grad_check n_checks', lambda: dl.grad_check(dl.Tanh(), f64(2), n_checks=0), ValueError, 'n_checks must be a positive'),
    # the sigmoid neuron and the lecture's network
    ('SigmoidNeuron n_inputs', lambda: dl.SigmoidNeuron(0), ValueError, 'n_inputs must be a positive integer'),
    ('SigmoidNeuron X shape', lambda: dl.SigmoidNeuron(2)(f64(3, 3)), ValueError, 'X must have shape (P, 2)'),
    ('SigmoidNeuron X NaN', lambda: dl.SigmoidNeuron(1)(np.array([[np.nan]])), ValueError, 'X contains NaN'),
    ('SigmoidNeuron t range', lambda: dl.SigmoidNeuron(2).fit(f64(3, 2), np.array([0., 1., 2.])), ValueError, 't must hold targets in [0, 1]'),
    ('SigmoidNeuron t shape', lambda: dl.SigmoidNeuron(2).error(f64(3, 2), f64(2)), ValueError, 't must have shape (3,)'),
    ('SigmoidNeuron epochs', lambda: dl.SigmoidNeuron(2).fit(f64(3, 2), f64(3), epochs=0), ValueError, 'epochs must be a positive integer'),
    ('SigmoidNeuron lr', lambda: dl.SigmoidNeuron(2).delta_rule_step(f64(2), 1.0, lr=float('inf')), ValueError, 'lr must be a positive number'),
    # training
    ('gradient_descent model', lambda: dl.gradient_descent(lambda x: x, dl.MSELoss(), f32(2, 1), f32(2, 1)), TypeError, 'model must be a Module'),
    ('gradient_descent lengths', lambda: dl.gradient_descent(dl.Linear(1, 1), dl.MSELoss(), f32(3, 1), f32(2, 1)), ValueError, 'X and T must hold the same'),
    ('gradient_descent lr', lambda: dl.gradient_descent(dl.Linear(1, 1), dl.MSELoss(), f32(2, 1), f32(2, 1), lr=0), ValueError, 'lr must be a positive number'),
    ('gradient_descent batch', lambda: dl.gradient_descent(dl.Linear(1, 1), dl.MSELoss(), f32(2, 1), f32(2, 1), batch_size=0), ValueError, 'batch_size must be a positive integer'),
    ('gradient_descent NaN target', lambda: dl.gradient_descent(dl.Linear(1, 1), dl.MSELoss(), f32(2, 1), np.full((2, 1), np.nan, np.float32)), ValueError, 'T contains NaN'),
    ('manual_seed rng', lambda: dl.get_rng(1.5), TypeError, 'rng must be None, an int seed'),
]


@pytest.mark.parametrize('desc,call,exc,fragment', CASES, ids=[c[0] for c in CASES])
def test_bad_input(desc, call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"message {str(info.value)!r} lacks {fragment!r}"


def test_refused_load_changes_nothing():
    lin = dl.Linear(2, 2, rng=0)
    before = lin.state_dict()
    with pytest.raises(ValueError):   # the first key is fine, the second is not: nothing may be loaded
        lin.load_state_dict({'weight': np.zeros((2, 2)), 'bias': np.zeros(3)})
    for k, v in lin.state_dict().items(): np.testing.assert_array_equal(v, before[k])


def test_divergence_is_reported():
    X = np.array([[1e3], [-1e3]], np.float32)
    with pytest.raises(FloatingPointError, match='epoch 1: the learning rate 1e\\+30 is probably too high|epoch'):
        with np.errstate(all='ignore'):
            dl.gradient_descent(dl.Linear(1, 1, rng=0), dl.MSELoss(), X, X, lr=1e30, epochs=5)
