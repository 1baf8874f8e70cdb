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
