"""Oracle tests: dlcourse against PyTorch (CPU) on the same weights and inputs, float32 and float64.

Outputs, input gradients and parameter gradients must agree for random shapes (hypothesis).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import dlcourse as dl
from conftest import TOL

dtypes = st.sampled_from([np.float32, np.float64])
sizes = st.integers(1, 12)


def close(a, b, dtype):
    np.testing.assert_allclose(a, b.detach().numpy() if hasattr(b, 'detach') else b, **TOL[dtype])


def torch_run(torch, module, x, dout):
    "Forward and backward through a torch module; returns output, input gradient"
    xt = torch.tensor(x, requires_grad=True)
    out = module(xt)
    out.backward(torch.tensor(dout))
    return out, xt.grad


@given(n=sizes, fin=sizes, fout=sizes, bias=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))
def test_linear(torch, n, fin, fout, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    ours = dl.Linear(fin, fout, bias=bias, dtype=dtype, rng=seed)
    ref = torch.nn.Linear(fin, fout, bias=bias, dtype=getattr(torch, np.dtype(dtype).name))
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x, dout = rng.normal(size=(n, fin)).astype(dtype), rng.normal(size=(n, fout)).astype(dtype)
    out, dx = torch_run(torch, ref, x, dout)
    y = ours(x)
    assert y.dtype == dtype
    close(y, out, dtype)
    close(ours.backward(dout), dx, dtype)
    close(ours.weight.grad, ref.weight.grad, dtype)
    if bias: close(ours.bias.grad, ref.bias.grad, dtype)


@pytest.mark.parametrize('name', ['Sigmoid', 'Tanh'])
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), dtype=dtypes, scale=st.sampled_from([1., 10., 100.]),
       seed=st.integers(0, 2**16))
def test_activation_modules(torch, name, shape, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    x, dout = (scale * rng.normal(size=shape)).astype(dtype), rng.normal(size=shape).astype(dtype)
    ours = getattr(dl, name)()
    out, dx = torch_run(torch, getattr(torch.nn, name)(), x, dout)
    close(ours(x), out, dtype)
    close(ours.backward(dout), dx, dtype)


@pytest.mark.parametrize('name', ['sigmoid', 'tanh', 'relu'])
@given(shape=st.lists(st.integers(1, 6), min_size=0, max_size=3), dtype=dtypes, seed=st.integers(0, 2**16))
def test_activation_functions_and_derivatives(torch, name, shape, dtype, seed):
    x = (5 * np.random.default_rng(seed).normal(size=shape)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch, name)(xt)
    yt.sum().backward()
    close(getattr(dl, name)(x), yt, dtype)
    close(getattr(dl, name + '_grad')(x), xt.grad, dtype)


def test_sigmoid_extremes_match_torch(torch):
    x = np.array([-1000., -100., -30., 0., 30., 100., 1000.])
    close(dl.sigmoid(x), torch.sigmoid(torch.tensor(x)), np.float64)
    close(dl.sigmoid_grad(x), torch.sigmoid(torch.tensor(x)) * (1 - torch.sigmoid(torch.tensor(x))), np.float64)


def test_relu_grad_at_zero_matches_torch(torch):
    xt = torch.zeros(3, requires_grad=True)
    torch.relu(xt).sum().backward()
    np.testing.assert_array_equal(dl.relu_grad(np.zeros(3)), xt.grad.numpy())


@pytest.mark.parametrize('reduction', ['mean', 'sum'])
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), dtype=dtypes, seed=st.integers(0, 2**16))
def test_mse_loss(torch, reduction, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    y, t = rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    yt = torch.tensor(y, requires_grad=True)
    ref = torch.nn.MSELoss(reduction=reduction)(yt, torch.tensor(t))
    ref.backward()
    ours = dl.MSELoss(reduction)
    np.testing.assert_allclose(ours(y, t), ref.item(), **TOL[dtype])
    close(ours.backward(), yt.grad, dtype)


@given(dtype=dtypes, n=sizes, seed=st.integers(0, 2**16))
def test_network_state_dict_round_trip(torch, dtype, n, seed):
    "A whole network: weights moved from dlcourse to torch.nn.Sequential and back give the same outputs and gradients"
    rng = np.random.default_rng(seed)
    tdtype = getattr(torch, np.dtype(dtype).name)
    ours = dl.Sequential(dl.Linear(3, 7, dtype=dtype, rng=seed), dl.Tanh(), dl.Linear(7, 5, dtype=dtype, rng=seed + 1),
                         dl.Sigmoid(), dl.Flatten(), dl.Linear(5, 2, dtype=dtype, rng=seed + 2))
    ref = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh(), torch.nn.Linear(7, 5), torch.nn.Sigmoid(),
                              torch.nn.Flatten(), torch.nn.Linear(5, 2)).to(tdtype)
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x, t = rng.normal(size=(n, 3)).astype(dtype), rng.normal(size=(n, 2)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    loss_t = torch.nn.MSELoss()(ref(xt), torch.tensor(t))
    loss_t.backward()
    loss_fn = dl.MSELoss()
    loss = loss_fn(ours(x), t)
    dx = ours.backward(loss_fn.backward())
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[dtype])
    close(dx, xt.grad, dtype)
    for (name, p), (tname, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert name == tname
        close(p.grad, tp.grad, dtype)
    # and back: torch weights into a fresh dlcourse model
    fresh = dl.Sequential(dl.Linear(3, 7, dtype=dtype), dl.Tanh(), dl.Linear(7, 5, dtype=dtype), dl.Sigmoid(),
                          dl.Flatten(), dl.Linear(5, 2, dtype=dtype))
    fresh.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    close(fresh(x), ref(torch.tensor(x)), dtype)


def test_gradient_descent_matches_torch_sgd(torch):
    "Three full-batch steps of gradient_descent equal torch.optim.SGD's on the same network and data"
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(16, 2)), rng.uniform(size=(16, 1))
    ours = dl.Sequential(dl.Linear(2, 4, dtype=np.float64, rng=0), dl.Sigmoid(), dl.Linear(4, 1, dtype=np.float64, rng=1))
    ref = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 1)).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    dl.gradient_descent(ours, dl.MSELoss(), X, T, lr=0.3, epochs=3, rng=0)
    opt = torch.optim.SGD(ref.parameters(), lr=0.3)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.MSELoss()(ref(torch.tensor(X)), torch.tensor(T)).backward()
        opt.step()
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-12, atol=1e-13)
