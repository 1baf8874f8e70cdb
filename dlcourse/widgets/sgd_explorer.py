"""The SGD explorer: learning rate, batch size and momentum on a two-weight regression problem."""
import numpy as np
import traitlets

from ..core import Parameter, check_number
from ..optim import SGD
from ._base import STATIC, _CourseWidget


def _random32(seed):  # an integer seed, 0 <= seed < 2**32
    "mulberry32, as the SGD explorer's view computes it: an endless iterator of 32-bit integers"
    a, M = seed & 0xFFFFFFFF, 0xFFFFFFFF
    while True:
        a = (a + 0x6D2B79F5) & M
        t = ((a ^ (a >> 15)) * (a | 1)) & M
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & M)) & M
        yield t ^ (t >> 14)


def _permutation(n, rand):
    "Fisher-Yates shuffle of range(n) with j = floor(r (i + 1) / 2**32), as the view does it"
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        j = (next(rand) * (i + 1)) >> 32
        p[i], p[j] = p[j], p[i]
    return p


def _regression_problem(n=64, seed=0):
    "The SGD explorer's data: y = 2 x1 - x2 + noise, the second input three times as spread out as the first"
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, 2)) * [1.0, 3.0]).round(3)
    return X, (X @ [2.0, -1.0] + rng.normal(0, 1.0, n)).round(3)


class SGDExplorer(_CourseWidget):
    "Learning rate, batch size and momentum on a two-weight regression problem: paths on the loss contours, loss curves"
    _esm = STATIC / 'sgd_explorer.js'
    _dlcourse_widget = traitlets.Unicode('sgd-explorer').tag(sync=True)
    _repr_traits = ('lr', 'batch_size', 'momentum', 'steps')
    X = traitlets.List().tag(sync=True)            # inputs (N, 2)
    y = traitlets.List().tag(sync=True)            # targets (N,)
    w0 = traitlets.List([-2.0, 2.0]).tag(sync=True)
    lr = traitlets.Float(0.05).tag(sync=True)
    batch_size = traitlets.Int(8).tag(sync=True)
    momentum = traitlets.Float(0.0).tag(sync=True)
    steps = traitlets.Int(100).tag(sync=True)
    seed = traitlets.Int(0).tag(sync=True)          # of the batch order

    def __init__(self, lr=0.05,        # learning rate α, in (0, 1]
                 batch_size=8,         # B, 1 to N
                 momentum=0.0,         # μ in [0, 0.99]
                 steps=100,            # SGD steps drawn, 1 to 1000
                 seed=0,               # seed of the batch order
                 w0=(-2.0, 2.0)):      # the starting weights
        X, y = _regression_problem()
        if isinstance(w0, str) or not hasattr(w0, '__len__') or len(w0) != 2:
            raise TypeError(f"w0 must be a pair of numbers (w1, w2), got {w0!r}")
        w0 = [check_number(v, 'w0', -100, 100) for v in w0]
        super().__init__(X=X.tolist(), y=y.tolist(), w0=w0, lr=check_number(lr, 'lr', 0, 1, low_open=True),
                         batch_size=check_number(batch_size, 'batch_size', 1, len(X), integer=True),
                         momentum=check_number(momentum, 'momentum', 0, 0.99),
                         steps=check_number(steps, 'steps', 1, 1000, integer=True), seed=check_number(seed, 'seed', 0, 2**32 - 1, integer=True))

    @traitlets.validate('lr', 'batch_size', 'momentum', 'steps', 'seed')
    def _check_assignment(self, proposal):
        "Values set from Python after construction are checked like the constructor's arguments"
        name, v = proposal['trait'].name, proposal['value']
        if name == 'lr': return check_number(v, 'lr', 0, 1, low_open=True)
        if name == 'momentum': return check_number(v, 'momentum', 0, 0.99)
        low, high = {'batch_size': (1, len(self.X)), 'steps': (1, 1000), 'seed': (0, 2**32 - 1)}[name]
        return check_number(v, name, low, high, integer=True)

    def loss(self, w):  # weights (2,)
        "E(w) = 1/(2N) Σ (w·x_n - y_n)²"
        X, y = np.array(self.X), np.array(self.y)
        return float(0.5 * np.mean((X @ np.asarray(w, np.float64) - y) ** 2))

    @property
    def minimum(self):
        "(w*, E(w*)): the least-squares solution"
        X, y = np.array(self.X), np.array(self.y)
        w = np.linalg.solve(X.T @ X, X.T @ y)
        return w, self.loss(w)

    def run(self, lr=None, batch_size=None, momentum=None, steps=None, seed=None):  # default: the widget's settings
        "The path the view draws, computed with the package's `SGD`: {'path': (k+1, 2), 'losses': (k+1,), 'diverged': step or None}"
        lr = self.lr if lr is None else lr
        B = self.batch_size if batch_size is None else batch_size
        mu = self.momentum if momentum is None else momentum
        steps, seed = self.steps if steps is None else steps, self.seed if seed is None else seed
        X, y = np.array(self.X), np.array(self.y)
        w = Parameter(np.array(self.w0, np.float64))
        opt, rand = SGD([w], lr=lr, momentum=mu), _random32(seed)
        path, losses, order, pos, diverged = [w.data.copy()], [self.loss(w.data)], None, len(X), None
        for k in range(steps):
            if pos >= len(X): order, pos = _permutation(len(X), rand), 0
            batch = order[pos:pos + B]
            pos += B
            Xb, yb = X[batch], y[batch]
            w.grad[...] = Xb.T @ (Xb @ w.data - yb) / len(batch)          # the mini-batch gradient
            opt.step()
            path.append(w.data.copy()); losses.append(self.loss(w.data))
            if not losses[-1] <= 1e12: diverged = k + 1; break
        return {'path': np.array(path), 'losses': np.array(losses), 'diverged': diverged}
