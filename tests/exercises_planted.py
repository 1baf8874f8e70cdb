"""Planted wrong answers for tests/test_exercises.py: for every exercise marked in a lesson, a mistake students make.

Each entry is `exercise: (replacements, message)`. The replacements `(solution text, wrong text)` are applied inside the
exercise's solution regions (each solution text must occur there exactly once, and nowhere else in its cell), giving a
submission with that mistake; its check must fail with `message` in its text. tests/test_exercises.py fails for a marked
exercise that has no entry here, so adding an exercise to a lesson means adding its planted mistake too.
"""
PLANTED = {
    # 01_sigmoid_neuron
    'sigmoid_grad': ([('return s * (1 - s)', 'return s')], "that is σ(a) itself"),
    'delta_rule': ([('delta = y * (1 - y) * (t - y)', 'delta = t - y')], "the factor y(1 - y) is missing"),
    # 02_backprop
    'hidden_deltas': ([('delta_hid = hidden * (1 - hidden) * (self.W_out.T @ delta_out)', 'delta_hid = self.W_out.T @ delta_out'),
                       (' * xk[k] * (1 - xk[k]) for k in range(H)]', ' for k in range(H)]')],
                      "the factor x_k(1 - x_k) is missing"),
    # 03_convolution (picked up once the lesson is marked; see the lead's notes)
    'conv_output_size': ([('span = I - F + 2 * P', 'span = I - F + P')], "the padding P is added on both sides"),
    'conv_forward': ([('np.sum(patch * w[k])', 'np.sum(patch * w[k, :, ::-1, ::-1])')],
                     "your output is the filter flipped: the layer computes cross-correlation"),
    'conv_backward': ([('dxp[window] += dout[n, k, i, j] * w[k]', 'dxp[window] += dout[n, k, i, j] * w[k, :, ::-1, ::-1]')],
                      "the input gradient uses the filter turned by 180°"),
    # 05_pooling
    'max_pool_forward': ([('a[i * S + u][j * S + v]', 'a[i + u][j + v]')], "the windows move by one input instead of S"),
    'max_pool_backward': ([('da[max(window, key=lambda p: a[p[0]][p[1]])] += g', 'for p in window: da[p] += g')],
                          "that is sum pooling"),
    # 06_softmax
    'ce_grad': ([('self._grad = (np.exp(logp) - t) * scale', 'self._grad = np.exp(logp) - t')],
                "the gradient is N times too large"),
    # 07_sgd
    'sgd_update': ([("p.data -= p.data.dtype.type(h['lr']) * g", "p.data += p.data.dtype.type(h['lr']) * g")],
                   "the step goes uphill"),
    # 08_model_zoo (picked up once the lesson is marked; see the lead's notes)
    'lenet5_stack': ([('act5=act(), ', '')], "the activation after C5 is missing"),
}

# More mistakes, one for each kind of case a check must cover: `key: (exercise, kind, replacements, message)`. Each is
# planted alone, in a submission of its own, and its check (or the lesson's own test of the exercise) must fail with
# `message` in its text; each would pass checks that try only default arguments, one parameter, small float64 arrays.
KINDS = {
    'sigmoid_grad-overflow': ('sigmoid_grad', 'large inputs', [('return s * (1 - s)', 'return np.exp(-x) / (1 + np.exp(-x)) ** 2')],
                              "got nan"),
    'sigmoid_grad-float64': ('sigmoid_grad', 'float32', [('return s * (1 - s)', 'return np.asarray(s, np.float64) * (1 - s)')],
                             "dtype float64, expected float32"),
    'sigmoid_grad-scalar': ('sigmoid_grad', 'scalars', [('return s * (1 - s)', 'return np.atleast_1d(s * (1 - s))')],
                            "expected a scalar"),
    'sigmoid_grad-tail': ('sigmoid_grad', "the lesson's tests", [('return s * (1 - s)', 'return s * (1 - s) * (np.abs(x) < 4)')],
                          "the lesson's test in cell"),
    'conv_output_size-ceil': ('conv_output_size', 'non-default arguments', [('return span // S + 1', 'return -(-span // S) + 1')],
                              "floor=True"),
    'max_pool_forward-reduce': ('max_pool_forward', 'non-default arguments', [('return [[reduce([', 'return [[max([')],
                                "`reduce` is ignored"),
    'max_pool_backward-columns': ('max_pool_backward', 'ties', [('for u in range(F) for v in range(F)]', 'for v in range(F) for u in range(F)]')],
                                  "at a tie the gradient goes to the first maximum in row-major order"),
    'ce_grad-mean-always': ('ce_grad', 'non-default arguments', [('self._grad = (np.exp(logp) - t) * scale', 'self._grad = (np.exp(logp) - t) / n')],
                            "with reduction='sum' there is no 1/N"),
    'ce_grad-overflow': ('ce_grad', 'large inputs', [('self._grad = (np.exp(logp) - t) * scale',
                         'self._grad = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True) - t) * scale')], "got nan"),
    'sgd_update-shared-velocity': ('sgd_update', 'several parameters', [("s = self.state.setdefault(i, {})", "s = self.state.setdefault(0, {})")],
                                   "self.state[i]"),
    'sgd_update-float64': ('sgd_update', 'float32', [("p.data -= p.data.dtype.type(h['lr']) * g", "p.data = p.data - h['lr'] * g.astype(np.float64)")],
                           "its data has dtype float64 and its gradient float32"),
    'lenet5_stack-rng': ('lenet5_stack', 'rng', [('c3=Conv2d(6, 16, 5, dtype=dtype, rng=rng)', 'c3=Conv2d(6, 16, 5, dtype=dtype)')],
                         "weights: item 2: the values differ"),
    'lenet5_stack-dtype': ('lenet5_stack', 'dtype', [('f6=Linear(120, 84, dtype=dtype, rng=rng)', 'f6=Linear(120, 84, rng=rng)')],
                           "x has dtype float64, expected float32"),
}

# Cheats on sigmoid_grad (lesson 01), each with the planted mistake `return s`: `key: (cell, replacements, message)`.
# `cell` is a cell the student adds before the exercise's check cell (or None); every one must fail with `message`.
CHEATS = {
    'redefine-check': ("def check(exercise, *args, **kwargs): print(f'exercise {exercise}: correct on 1 case')",
                       [('return s * (1 - s)', 'return s')], "that is σ(a) itself"),
    'patch-allclose': ("np.allclose = np.isclose = np.array_equal = lambda *a, **k: True\n"
                       "import dlcourse.exercises; dlcourse.exercises._difference = lambda *a, **k: None",
                       [('return s * (1 - s)', 'return s')], "that is σ(a) itself"),
    'read-frames': (None, [('return s * (1 - s)', "import sys\n    f = sys._getframe(1)\n    while f is not None:\n"
                            "        if 'expected' in f.f_locals: return f.f_locals['expected']\n        f = f.f_back\n"
                            "    return s")], "that is σ(a) itself"),
    'keep-code-object': ("import types, dlcourse.activations as _A\n_solution = _A.sigmoid_grad.__code__",
                         [('return s * (1 - s)', 'return types.FunctionType(_solution, vars(_A))(x)')],
                         "calls the package's own solution"),
    'reload-package': (None, [('return s * (1 - s)', 'import importlib, dlcourse.activations as A\n'
                                                    '    return importlib.reload(A).sigmoid_grad(x)')],
                       "cannot be reloaded while a submission is graded"),
    'import-afresh': (None, [('return s * (1 - s)', "import sys; loaded = sys.modules.pop('dlcourse.activations')\n"
                                                   "    try: import dlcourse.activations as A\n"
                                                   "    finally: sys.modules['dlcourse.activations'] = loaded\n"
                                                   "    return A.sigmoid_grad(x)")],
                      "cannot be reloaded while a submission is graded"),
    'read-the-lesson': (None, [('return s * (1 - s)', "import json, dlcourse\n"
                                "    json.load(open(dlcourse.__file__.rsplit('/', 2)[0] + '/nbs/01_sigmoid_neuron.ipynb'))\n"
                                "    return s")], "raised FileNotFoundError"),
}
