"""The neuron trainer: one sigmoid unit trained with the delta rule, in the browser or in Python."""
import numpy as np
import traitlets

from ..core import check_number
from ..neuron import SigmoidNeuron, _check_patterns
from ..toydata import make_separable
from ._base import STATIC, _CourseWidget, _rounded


class NeuronTrainer(_CourseWidget):
    "One sigmoid unit on a 2-D problem, trained with the delta rule in the browser: steps, play, learning rate, boundary, error"
    _esm = STATIC / 'neuron_trainer.js'
    _dlcourse_widget = traitlets.Unicode('neuron-trainer').tag(sync=True)
    _repr_traits = ('lr', 'steps')
    X = traitlets.List().tag(sync=True)          # the patterns (P, 2)
    t = traitlets.List().tag(sync=True)          # their targets (P,)
    w0 = traitlets.List().tag(sync=True)         # the initial weights, for reset
    b0 = traitlets.Float(0.0).tag(sync=True)
    w = traitlets.List().tag(sync=True)          # the current weights
    b = traitlets.Float(0.0).tag(sync=True)
    lr = traitlets.Float(0.5).tag(sync=True)
    steps = traitlets.Int(0).tag(sync=True)      # delta-rule steps taken so far
    errors = traitlets.List().tag(sync=True)     # E after each of the last (at most 2000) steps

    def __init__(self, X=None,   # patterns (P, 2); default: 40 points of `make_separable`
                 t=None,         # targets (P,) in [0, 1]
                 lr=0.5,         # learning rate α
                 rng=0):         # seed of the initial weights (as `SigmoidNeuron`)
        if X is None and t is None: X, t = make_separable(40, rng=0)
        if X is None or t is None: raise ValueError("X and t must be given together (or neither, for the default problem)")
        X, t = _check_patterns(X, t, 2)
        if not 1 <= len(X) <= 1000: raise ValueError(f"X must hold 1 to 1000 patterns, got {len(X)}")
        w0 = SigmoidNeuron(2, rng=rng).w.tolist()
        super().__init__(X=_rounded(X, 4), t=t.tolist(), w0=w0, b0=0.0, w=list(w0), b=0.0,
                         lr=check_number(lr, 'lr', 0, 100, low_open=True), steps=0)
        self.errors = [self.error()]

    @traitlets.validate('lr')
    def _check_assignment(self, proposal):
        "A learning rate set from Python after construction is checked like the constructor's"
        return check_number(proposal['value'], 'lr', 0, 100, low_open=True)

    def _unit(self):
        "A SigmoidNeuron holding the current weights"
        unit = SigmoidNeuron(2, rng=0)
        unit.w, unit.b = np.array(self.w, np.float64), float(self.b)
        return unit

    def error(self):
        "The lecture's error E = 1/2 Σ_p (t^p - y^p)² of the current weights, by the package"
        return self._unit().error(np.array(self.X), np.array(self.t))

    def step(self, n=1):  # number of delta-rule steps
        "Train `n` steps in Python with `SigmoidNeuron.delta_rule_step`: pattern (steps mod P) at each step"
        n = check_number(n, 'n', 1, 10**6, integer=True)
        unit, X, t = self._unit(), np.array(self.X), np.array(self.t)
        errors = list(self.errors)
        for k in range(self.steps, self.steps + n):
            unit.delta_rule_step(X[k % len(X)], t[k % len(X)], self.lr)
            errors.append(unit.error(X, t))
        with self.hold_sync():
            self.w, self.b, self.steps, self.errors = unit.w.tolist(), float(unit.b), self.steps + n, errors[-2000:]
        return self

    def reset(self):
        "Back to the initial weights"
        with self.hold_sync():
            self.w, self.b, self.steps = list(self.w0), self.b0, 0
            self.errors = [self.error()]
        return self
