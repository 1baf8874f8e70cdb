"""Adam against torch.optim.Adam over many steps; StepLR and CosineAnnealingLR against PyTorch's schedulers; bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import dlcourse as dl
from dlcourse.optim import SGD, Adam, CosineAnnealingLR, StepLR


@given(lr=st.sampled_from([1e-3, 0.1]), betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9)]), eps=st.sampled_from([1e-8, 1e-3]),
       weight_decay=st.sampled_from([0.0, 0.1]), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_adam_matches_torch(torch, lr, betas, eps, weight_decay, dtype, seed):
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (4,), (2, 1, 3, 3)]
    ours = [dl.Parameter(rng.normal(size=s).astype(dtype)) for s in shapes]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt = Adam(ours, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    topt = torch.optim.Adam(theirs, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
    steps = 10
    for _ in range(steps):
        for p, t in zip(ours, theirs):
            g = (rng.normal(size=p.shape) * 10.0 ** rng.integers(-3, 3)).astype(dtype)   # gradients of any scale
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step(); topt.step()
    # each step moves a weight by at most about lr / (1 - beta1) and rounds it to a few eps of its new value: the two
    # implementations order the same operations differently, so their weights differ by a few eps per step
    eps_t = np.finfo(dtype).eps
    for p, t in zip(ours, theirs):
        scale = np.abs(t.detach().numpy()).max() + lr / (1 - betas[0])
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=0, atol=8 * steps * eps_t * scale)
        st_t = topt.state[t]
        np.testing.assert_allclose(opt.state[shapes.index(p.shape)]['exp_avg'], st_t['exp_avg'].numpy(), rtol=8 * steps * eps_t,
                                   atol=8 * steps * eps_t * np.abs(st_t['exp_avg'].numpy()).max())
    assert opt.hyper['step'] == steps == int(topt.state[theirs[0]]['step'])


def test_adam_state_round_trip():
    w = dl.Parameter(np.array([1.0, 2.0], np.float32))
    opt = Adam([w], lr=0.1)
    w.grad[...] = [1.0, -1.0]; opt.step()
    again = Adam([dl.Parameter(w.data.copy())], lr=0.1)
    again.load_state_dict(opt.state_dict())
    assert again.hyper == opt.hyper and again.hyper['step'] == 1
    np.testing.assert_array_equal(again.state[0]['exp_avg'], opt.state[0]['exp_avg'])


@pytest.mark.parametrize('bad, message', [
    (dict(lr=0), 'lr must be a positive number'), (dict(betas=0.9), 'betas must be a pair'),
    (dict(betas=(0.9, 1.0)), 'betas[1] must be'), (dict(betas=(-0.1, 0.9)), 'betas[0] must be'),
    (dict(eps=0), 'eps must be'), (dict(weight_decay=-1), 'weight_decay must be')])
def test_adam_bad_input(bad, message):
    with pytest.raises((ValueError, TypeError), match=message.replace('[', r'\[').replace(']', r'\]')):
        Adam([dl.Parameter(np.zeros(2))], **bad)


@pytest.mark.parametrize('make, make_torch', [
    (lambda o: StepLR(o, step_size=3, gamma=0.5), lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    (lambda o: StepLR(o, step_size=1), lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=1)),
    (lambda o: CosineAnnealingLR(o, T_max=7), lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7)),
    (lambda o: CosineAnnealingLR(o, T_max=5, eta_min=0.01), lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01))])
def test_schedules_match_torch(torch, make, make_torch):
    ours = make(SGD([dl.Parameter(np.zeros(1))], lr=0.2))
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([w], lr=0.2)
    theirs = make_torch(torch, topt)
    for epoch in range(1, 8):          # over the whole schedule (a cosine's T_max included)
        topt.step(); theirs.step(); ours.step()
        # torch's cosine is a recurrence over the epochs, ours the closed form: a few eps of lr per epoch apart
        assert ours.optimizer.lr == pytest.approx(topt.param_groups[0]['lr'], abs=4 * epoch * np.finfo(float).eps * 0.2)
        assert ours.last_epoch == epoch


def test_schedule_resumes_and_refuses_bad_input():
    opt = SGD([dl.Parameter(np.zeros(1))], lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=10)
    for _ in range(4): sched.step()
    other = CosineAnnealingLR(SGD([dl.Parameter(np.zeros(1))], lr=0.1), T_max=10)
    other.set_epoch(4)
    assert other.optimizer.lr == opt.lr
    with pytest.raises(ValueError, match='T_max must be'): CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match='gamma must be'): StepLR(opt, step_size=2, gamma=-1)
    with pytest.raises(ValueError, match='epoch must be'): sched.set_epoch(-1)
    with pytest.raises(TypeError, match='optimizer must be an Optimizer'): StepLR('sgd', step_size=2)
