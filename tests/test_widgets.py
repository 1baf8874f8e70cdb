"""Kernel-side tests of the course's widgets (dlcourse.widgets, nbs/10_widgets.ipynb).

Each widget builds with a valid, small, JSON state that carries its bundled front end, refuses bad arguments by name,
and computes in Python with the package. The JavaScript of the views is checked twice: here, the bundles are loaded in
Node.js and their pure functions (the PRNG, the SGD run, the convolution, the pooling, the activation functions) are
compared with Python; in tests/test_widgets_site.py, the views themselves run in Chromium on the built site (eslint and
the bundles' freshness are tools/js/check's). The saved notebooks are checked too: every lesson shows its widgets with
their state saved, the state stays small, nbdev-clean keeps it, and what it holds (the front ends, the pretrained
LeNet-5's numbers) is what ships now.
"""
import base64
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REQUIRE_ALL, require

from dlcourse.activations import (leaky_relu, leaky_relu_grad, relu, relu_grad, sigmoid, sigmoid_grad, tanh,
                                  tanh_grad)
from dlcourse.conv import conv2d, conv_output_size
from dlcourse.data import normalize, preprocess
from dlcourse.losses import softmax
from dlcourse.neuron import SigmoidNeuron
from dlcourse.pool import avg_pool2d, max_pool2d, sum_pool2d
from dlcourse.toydata import make_xor
from dlcourse.widgets import (ActivationExplorer, ConvExplorer, FeatureMapViewer, NeuronTrainer, PoolingExplorer,
                              SGDExplorer)
from dlcourse.widgets._base import STATIC, _sample_images
from dlcourse.widgets.sgd_explorer import _permutation, _random32

NBS = Path(__file__).resolve().parent.parent/'nbs'
WIDGET_MIME, STATE_MIME = 'application/vnd.jupyter.widget-view+json', 'application/vnd.jupyter.widget-state+json'
KINDS = {ActivationExplorer: 'activation-explorer', NeuronTrainer: 'neuron-trainer', ConvExplorer: 'conv-explorer',
         PoolingExplorer: 'pooling-explorer', SGDExplorer: 'sgd-explorer', FeatureMapViewer: 'feature-map-viewer'}
# The lessons that show each widget; 10_widgets, the deep dive, shows all six
LESSON_WIDGETS = {'01_sigmoid_neuron': {'activation-explorer', 'neuron-trainer'}, '03_convolution': {'conv-explorer'},
                  '04_relu': {'activation-explorer'}, '05_pooling': {'pooling-explorer'}, '07_sgd': {'sgd-explorer'},
                  '08_model_zoo': {'feature-map-viewer'}, '10_widgets': set(KINDS.values())}
MAX_NOTEBOOK_STATE = 400_000     # bytes of saved widget state per notebook (the notebooks are committed)


def bundle(cls):
    "The bundled front end of a widget class: static/<its module>.js (tools/js/build)"
    return STATIC/f"{cls.__module__.rsplit('.', 1)[1]}.js"


def source(cls):
    "The front end's source, which the bundle is built from: js/<its module>.js"
    return STATIC.parent/'js'/bundle(cls).name


@pytest.fixture(scope='module')
def made():
    "One widget of each kind, with its default data"
    ws = {cls: cls() for cls in KINDS}
    yield ws
    for w in ws.values(): w.close()


# ------------------------------------------------------------------------------------------------------ the state
@pytest.mark.parametrize('cls', list(KINDS), ids=lambda c: c.__name__)
def test_state_is_valid_and_small(made, cls):
    w = made[cls]
    state = w.get_state()
    text = json.dumps(state, allow_nan=False)                       # plain JSON: no NaN, no binary buffers
    assert state['_dlcourse_widget'] == KINDS[cls]
    assert (state['_model_module'], state['_model_name'], state['_view_name']) == ('anywidget', 'AnyModel', 'AnyView')
    assert state['_esm'] == bundle(cls).read_text(encoding='utf-8'), 'the state carries the front end itself (the site needs it)'
    assert state['_css'] == (STATIC/'widgets.css').read_text(encoding='utf-8') and '.dlw-root' in state['_css']
    assert len(text) < 200_000, f'{cls.__name__} state is {len(text):,} bytes'
    assert repr(w).startswith(f'{cls.__name__}(') and ' at 0x' not in repr(w)   # stable text in the notebooks


def test_every_control_in_the_modules_is_labelled():
    "Every control the views make goes through the library's labelled factories or `button(text, aria, ...)`"
    for cls in KINDS:
        code = source(cls).read_text(encoding='utf-8')
        assert "from './lib.js'" in code, f'{source(cls).name}: the view draws with the shared library'
        assert not re.search(r"h\('(input|select|textarea)'", code), f'{cls.__name__}: a control outside the library'
        for call in re.findall(r"(?:rangeControl|choiceControl|numberControl|selectControl)\(\{label: '[^']+'", code):
            assert "label: ''" not in call
        for text, aria in re.findall(r"button\(('[^']*'|`[^`]*`), ('[^']*'|`[^`]*`)", code):
            assert aria.strip("'`"), f'{cls.__name__}: button {text} has no aria-label'


# --------------------------------------------------------------------------------------------- argument checks
BAD = [
    (lambda: ActivationExplorer('swish'), ValueError, 'activation must be one of'),
    (lambda: ActivationExplorer(functions='sigmoid'), TypeError, 'functions must be a sequence'),
    (lambda: ActivationExplorer(functions=[]), ValueError, 'functions must name at least one'),
    (lambda: ActivationExplorer(x=np.inf), ValueError, 'x must be a number in [-8, 8]'),
    (lambda: ActivationExplorer(x=True), TypeError, 'x must be a number in [-8, 8], got True (bool)'),
    (lambda: NeuronTrainer(np.ones((3, 2)), None), ValueError, 'X and t must be given together'),
    (lambda: NeuronTrainer(np.ones((3, 2)), np.ones(4)), ValueError, 't must have shape (3,)'),
    (lambda: NeuronTrainer(lr=-1), ValueError, 'lr must be a number in (0, 100]'),
    (lambda: NeuronTrainer(np.ones((1001, 2)), np.ones(1001)), ValueError, 'X must hold 1 to 1000 patterns'),
    (lambda: NeuronTrainer(lr='fast'), TypeError, "lr must be a number in (0, 100], got 'fast' (str)"),
    (lambda: ConvExplorer(I=257), ValueError, 'I must be an integer in [1, 256], got 257'),
    (lambda: ConvExplorer(P=-1), ValueError, 'P must be an integer in [0, 8], got -1'),
    (lambda: ConvExplorer(F='3'), TypeError, "F must be an integer in [1, 15], got '3' (str)"),
    (lambda: ConvExplorer(filter='emboss'), ValueError, 'filter must be one of'),
    (lambda: ConvExplorer(filter='LeNet-5 C1 filter 1', lenet=False), ValueError, 'filter must be one of'),
    (lambda: ConvExplorer(images=np.zeros((2, 28, 28), np.float32)), TypeError, 'images must be a uint8 numpy array'),
    (lambda: ConvExplorer(images=np.zeros((2, 28), np.uint8)), ValueError, 'images must have shape (N, H, W)'),
    (lambda: ConvExplorer(images=np.zeros((2, 28, 28), np.uint8), labels=[1]), ValueError, 'labels must have one entry per image'),
    (lambda: PoolingExplorer(mode='median'), ValueError, "mode must be one of ['max', 'sum', 'avg']"),
    (lambda: PoolingExplorer(S=0), ValueError, 'S must be an integer in [1, 6], got 0'),
    (lambda: PoolingExplorer(maps={'big': np.ones((41, 3))}), ValueError, "maps['big'] must be a finite 2-D array"),
    (lambda: PoolingExplorer(maps={'nan': np.full((3, 3), np.nan)}), ValueError, "maps['nan'] must be a finite 2-D array"),
    (lambda: SGDExplorer(lr=2.0), ValueError, 'lr must be a number in (0, 1]'),
    (lambda: SGDExplorer(batch_size=0), ValueError, 'batch_size must be an integer in [1, 64], got 0'),
    (lambda: SGDExplorer(steps=1001), ValueError, 'steps must be an integer in [1, 1000]'),
    (lambda: SGDExplorer(seed=-1), ValueError, 'seed must be an integer in [0, 4294967295]'),
    (lambda: SGDExplorer(w0=(1.0, 'a')), TypeError, 'w0 must be a number'),
    (lambda: FeatureMapViewer(images=np.zeros((2, 28, 28), np.int64)), TypeError, 'images must be a uint8 numpy array'),
    (lambda: FeatureMapViewer(channel=-1), ValueError, 'channel must be an integer in [0, 1023], got -1'),
    (lambda: FeatureMapViewer(model=object()), TypeError, 'model must be a Module'),
]


@pytest.mark.parametrize('make,error,message', BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_are_refused_by_name(make, error, message):
    with pytest.raises(error) as e: make()
    assert message in str(e.value)


ASSIGN = [(ActivationExplorer, 'activation', 'swish', ValueError, 'activation must be one of'),
          (ActivationExplorer, 'x', -9.0, ValueError, 'x must be a number in [-8, 8]'),
          (NeuronTrainer, 'lr', 0.0, ValueError, 'lr must be a number in (0, 100]'),
          (ConvExplorer, 'filter', 'emboss', ValueError, 'filter must be one of'),
          (ConvExplorer, 'P', 9, ValueError, 'P must be an integer in [0, 8], got 9'),
          (PoolingExplorer, 'map', 5, ValueError, 'map must be an integer in [0, 4], got 5'),
          (SGDExplorer, 'batch_size', 65, ValueError, 'batch_size must be an integer in [1, 64], got 65'),
          (SGDExplorer, 'momentum', 1.5, ValueError, 'momentum must be a number in [0, 0.99]'),
          (FeatureMapViewer, 'layer', 4, ValueError, 'layer must be an integer in [0, 3], got 4')]


@pytest.mark.parametrize('cls,name,value,error,message', ASSIGN, ids=[f'{c.__name__}.{n}' for c, n, *_ in ASSIGN])
def test_assignments_are_checked_like_arguments(made, cls, name, value, error, message):
    "A value set from Python after construction is refused as the constructor would, and the widget keeps its old one"
    w = made[cls]
    before = getattr(w, name)
    with pytest.raises(error) as e: setattr(w, name, value)
    assert message in str(e.value) and getattr(w, name) == before


def test_step_checks_its_argument():
    trainer = NeuronTrainer()
    for bad, error in ((0, ValueError), (2.0, TypeError)):
        with pytest.raises(error, match='n must be an integer'): trainer.step(bad)
    trainer.close()


# ---------------------------------------------------------------------------------- Python agrees with the package
def test_activation_explorer_is_the_package():
    w = ActivationExplorer(negative_slope=0.3)
    a = np.float64(0.3)
    package = {'sigmoid': (sigmoid, sigmoid_grad), 'tanh': (tanh, tanh_grad), 'relu': (relu, relu_grad),
               'leaky_relu': (lambda x: leaky_relu(x, a), lambda x: leaky_relu_grad(x, a))}
    for name, (f, df) in package.items():
        w.activation = name
        for x in np.linspace(-8, 8, 33):
            w.x = float(x)
            assert w.value == f(x) and w.gradient == df(x), (name, x)
    w.activation, w.x = 'tanh', 3.5
    assert w.saturated == (tanh_grad(3.5) < 0.01)
    w.close()


def test_neuron_trainer_is_the_delta_rule():
    X, t = make_xor()
    trainer = NeuronTrainer(X, t, lr=2.0, rng=3)
    unit = SigmoidNeuron(2, rng=3)
    for k in range(25):                             # the lecture's rule, written out: w_i += α y(1-y)(t-y) x_i
        x, target = X[k % 4], t[k % 4]
        y = sigmoid(unit.b + x @ unit.w)
        delta = y * (1 - y) * (target - y)
        unit.w = unit.w + 2.0 * delta * x
        unit.b += 2.0 * delta
    trainer.step(20).step(5)
    np.testing.assert_allclose(trainer.w, unit.w, rtol=1e-13)
    assert abs(trainer.b - unit.b) < 1e-13 and trainer.steps == 25 and len(trainer.errors) == 26
    assert trainer.error() == pytest.approx(unit.error(X, t), rel=1e-13)
    trainer.close()


def _conv_loops(x, w, S, P):
    "An independent oracle: the formula of lesson 03 as plain loops over the zero-padded image"
    xp = np.pad(x, P)
    F = len(w)
    O = (len(xp) - F) // S + 1
    return np.array([[np.sum(xp[i * S:i * S + F, j * S:j * S + F] * w) for j in range(O)] for i in range(O)])


def test_conv_explorer_is_conv2d(made):
    conv = made[ConvExplorer]
    for I, F, S, P in [(7, 3, 1, 0), (7, 3, 2, 0), (7, 3, 3, 0), (7, 3, 3, 1), (32, 5, 1, 0), (39, 11, 4, 0), (40, 11, 4, 0), (227, 11, 4, 0), (256, 11, 4, 0),
                       (5, 7, 1, 0), (5, 7, 1, 1), (28, 5, 2, 2)]:
        conv.I, conv.F, conv.S, conv.P = I, F, S, P
        try: expected = conv_output_size(I, F, S, P)
        except ValueError: expected = None
        assert conv.output_size == expected, (I, F, S, P)
    for name in conv.filters:
        for S, P in ((1, 0), (2, 1), (3, 2)):
            conv.S, conv.P = S, P
            w = np.array(conv.filters[name])
            np.testing.assert_allclose(conv.activation_map(4, name), _conv_loops(conv.input(4), w, S, P), rtol=1e-12, atol=1e-12)
    conv.S, conv.P = 1, 0


def test_conv_explorer_offers_the_shipped_lenet5_filters(made):
    from dlcourse.zoo import lenet5
    c1 = lenet5(pretrained=True).c1.weight.data
    lenet = [np.array(made[ConvExplorer].filters[f'LeNet-5 C1 filter {k}']) for k in range(1, 7)]
    np.testing.assert_array_equal(np.stack(lenet), c1[:, 0].astype(np.float64))


def test_pooling_explorer_is_the_package(made):
    pool = made[PoolingExplorer]
    from numpy.lib.stride_tricks import sliding_window_view
    for k in range(len(pool.maps)):
        for mode in ('max', 'sum', 'avg'):
            for F, S in ((2, 2), (3, 1), (3, 2), (1, 3), (4, 4)):
                pool.map, pool.mode, pool.F, pool.S = k, mode, F, S
                x = pool.input()
                win = sliding_window_view(x, (F, F))[::S, ::S]
                expected = {'max': win.max, 'sum': win.sum, 'avg': win.mean}[mode](axis=(2, 3))
                np.testing.assert_allclose(pool.output, expected, rtol=1e-12, atol=1e-12)
    pool.map, pool.mode, pool.F, pool.S = 0, 'max', 2, 2
    np.testing.assert_array_equal(pool.output, [[6, 8], [3, 4]])
    custom = PoolingExplorer(maps={'ramp': np.arange(25.).reshape(5, 5)}, map=1)
    np.testing.assert_array_equal(custom.output, max_pool2d(np.arange(25.).reshape(1, 1, 5, 5), 2)[0, 0])
    custom.close()


def test_sgd_explorer_is_the_package_sgd(made, torch):
    "The run takes its steps with dlcourse's SGD; torch.optim.SGD on the same batches takes the same ones"
    sgd = made[SGDExplorer]
    X, y = np.array(sgd.X), np.array(sgd.y)
    for lr, B, mu, seed in ((0.05, 8, 0.0, 0), (0.02, 1, 0.9, 7), (0.1, 64, 0.5, 3), (0.01, 16, 0.99, 11)):
        out = sgd.run(lr=lr, batch_size=B, momentum=mu, steps=120, seed=seed)
        w = torch.tensor(sgd.w0, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([w], lr=lr, momentum=mu)
        rand, order, pos = _random32(seed), None, len(X)
        for k in range(120):
            if pos >= len(X): order, pos = _permutation(len(X), rand), 0
            b = order[pos:pos + B]
            pos += B
            opt.zero_grad()
            Xb, yb = torch.tensor(X[b]), torch.tensor(y[b])
            (0.5 * ((Xb @ w - yb) ** 2).mean()).backward()
            opt.step()
        np.testing.assert_allclose(out['path'][-1], w.detach().numpy(), rtol=1e-9, atol=1e-12)
        assert out['losses'][-1] == pytest.approx(sgd.loss(out['path'][-1]))
    w_star, E_star = sgd.minimum
    np.testing.assert_allclose(w_star, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-12)


def test_feature_map_viewer_is_the_model(made):
    from dlcourse.engine.fusion import fusion
    from dlcourse.zoo import lenet5
    viewer = made[FeatureMapViewer]
    net = lenet5(pretrained=True).eval()
    images, _ = _sample_images()
    x = preprocess(images)
    expected = {'c1 → act1': net.act1(net.c1(x))}
    expected['s2'] = net.s2(expected['c1 → act1'])
    expected['c3 → act3'] = net.act3(net.c3(expected['s2']))
    expected['s4'] = net.s4(expected['c3 → act3'])
    assert [l['label'] for l in viewer.layers] == list(expected)
    for k, (label, maps) in enumerate(expected.items()):
        np.testing.assert_array_equal(viewer.feature_maps(k), maps)
        for n in range(len(images)):
            lo, hi = np.array(viewer.images[n]['ranges'][k]).T
            assert (np.abs(viewer.decoded(n, k) - maps[n]) <= (hi - lo)[:, None, None] / 510 + 1e-9).all()
    with fusion(False): logits = net(x)     # layer by layer, as the viewer runs it (fused layers round differently)
    probs = softmax(logits.astype(np.float64), axis=1)
    np.testing.assert_allclose(viewer.probabilities, probs, rtol=1e-12)
    # saved to 6 decimals by np.round (x * 1e6, rint, / 1e6): within half a unit of the 6th decimal, 5e-7, of the value
    # rounded, plus one float64 rounding in each of the two operations (2 eps for values up to 1), plus the 1e-12 (relative,
    # values up to 1) by which that value may differ from `probs` (the line above)
    saved_tol = 0.5e-6 + 2 * np.finfo(np.float64).eps + 1e-12
    np.testing.assert_allclose([im['probs'] for im in viewer.images], probs, rtol=0, atol=saved_tol)


# -------------------------------------------------------------------- the views' JavaScript, run in Node.js
def _node():
    node = shutil.which('node')
    if node is None:
        if REQUIRE_ALL: pytest.fail('node (Node.js) is needed: it comes with npm, which the site build needs', pytrace=False)
        pytest.skip('no node')
    return node


def run_js(tmp_path, cls, names, script):
    "Import `names` from the bundled front end of widget class `cls` in Node.js, run `script`, return what it prints as JSON"
    shutil.copy(bundle(cls), tmp_path/'m.mjs')                   # .mjs: Node.js loads it as the ES module it is
    (tmp_path/'run.mjs').write_text(f"import {{ {', '.join(names)} }} from './m.mjs';\n{script}\n", encoding='utf-8')
    res = subprocess.run([_node(), str(tmp_path/'run.mjs')], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize('cls', list(KINDS), ids=lambda c: c.__name__)
def test_bundle_is_one_es_module_whose_default_export_renders(tmp_path, cls):
    "What anywidget loads: a module with nothing left to import, its default export's `render` drawing the view"
    assert not re.search(r'^import\b', bundle(cls).read_text(encoding='utf-8'), re.M), f'{bundle(cls).name} imports'
    assert run_js(tmp_path, cls, ['default as widget'], 'console.log(JSON.stringify(typeof widget.render));') == 'function'


def test_js_random_numbers_and_sgd_equal_python(tmp_path, made):
    sgd = made[SGDExplorer]
    cases = [(0.05, 8, 0.0, 100, 0), (0.02, 1, 0.9, 300, 7), (0.3, 64, 0.0, 100, 1)]
    out = run_js(tmp_path, SGDExplorer, ['random32', 'permutation', 'sgd'], f"""
      const X = {json.dumps(sgd.X)}, y = {json.dumps(sgd.y)}, w0 = {json.dumps(sgd.w0)};
      const r = random32(4294967295), draws = Array.from({{length: 5}}, () => r());
      const perm = permutation(64, random32(42));
      const runs = {json.dumps(cases)}.map(([lr, B, mu, steps, seed]) => sgd(X, y, w0, lr, B, mu, steps, seed));
      console.log(JSON.stringify({{draws, perm, runs}}));""")
    rand = _random32(4294967295)
    assert out['draws'] == [next(rand) for _ in range(5)]
    assert out['perm'] == _permutation(64, _random32(42))
    for (lr, B, mu, steps, seed), js in zip(cases, out['runs']):
        py = sgd.run(lr=lr, batch_size=B, momentum=mu, steps=steps, seed=seed)
        assert js['diverged'] == py['diverged']
        np.testing.assert_allclose(js['path'], py['path'], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(js['losses'], py['losses'], rtol=1e-12)


def test_js_sgd_verdict_reads_the_last_steps(tmp_path, made):
    "Converged only when the loss stays near its minimum over the last steps: with momentum 0.9 it still swings at step 100"
    sgd = made[SGDExplorer]
    cases = [(0.05, 8, 0.9, 100, 0), (0.05, 8, 0.0, 100, 0), (0.1, 64, 0.0, 100, 0), (0.01, 64, 0.0, 300, 0),
             (0.3, 64, 0.0, 100, 0)]
    out = run_js(tmp_path, SGDExplorer, ['sgd', 'verdict'], f"""
      const X = {json.dumps(sgd.X)}, y = {json.dumps(sgd.y)}, w0 = {json.dumps(sgd.w0)}, Emin = {sgd.minimum[1]!r};
      console.log(JSON.stringify({json.dumps(cases)}.map(([lr, B, mu, steps, seed]) => {{
        const run = sgd(X, y, w0, lr, B, mu, steps, seed), ex = run.losses.map((v) => v - Emin);
        return verdict(run, ex, ex[0], steps); }})));""")
    assert [kind for kind, _ in out] == ['oscillating', 'converged', 'converged', 'running', 'diverged'], out
    swing = sgd.run(lr=0.05, batch_size=8, momentum=0.9, steps=100, seed=0)['losses'][-20:] - sgd.minimum[1]
    assert swing.max() > 100 * swing.min(), 'the case the verdict must not call converged does swing'
    assert 'swings between' in out[0][1]


def test_js_convolution_and_pooling_equal_the_package(tmp_path, made):
    conv = made[ConvExplorer]
    x, w = conv.input(2), np.array(conv.filters['LeNet-5 C1 filter 3'])
    cases = [(1, 0), (2, 1), (3, 2), (1, 4)]
    out = run_js(tmp_path, ConvExplorer, ['convolve', 'geometry'], f"""
      const x = {json.dumps(x.tolist())}, w = {json.dumps(w.tolist())};
      console.log(JSON.stringify({{maps: {json.dumps(cases)}.map(([S, P]) => convolve(x, w, S, P)),
                                   sizes: [[32, 5, 1, 0], [7, 3, 3, 0], [7, 3, 3, 1], [3, 5, 1, 0], [227, 11, 4, 0]].map((a) => geometry(...a))}}));""")
    for (S, P), js in zip(cases, out['maps']):
        np.testing.assert_allclose(js, conv2d(x[None, None], w[None, None], stride=S, padding=P)[0, 0], rtol=1e-12, atol=1e-12)
    assert [(g['O'], g['fits']) for g in out['sizes']] == [(28, True), (2, False), (3, True), (0, False), (55, True)]
    pool = made[PoolingExplorer]
    m = pool.input(2)
    out = run_js(tmp_path, PoolingExplorer, ['pool'], f"""
      const m = {json.dumps(m.tolist())};
      console.log(JSON.stringify(['max', 'sum', 'avg'].map((mode) => pool(m, 3, 2, mode))));""")
    for js, f in zip(out, (max_pool2d, sum_pool2d, avg_pool2d)):
        np.testing.assert_allclose(js, f(m[None, None], 3, 2)[0, 0], rtol=1e-12)


def test_js_activation_functions_equal_the_package(tmp_path):
    xs = np.linspace(-8, 8, 65).tolist() + [-1000.0, 1000.0]
    out = run_js(tmp_path, ActivationExplorer, ['FUNCTIONS'], f"""
      const xs = {json.dumps(xs)};
      console.log(JSON.stringify(Object.fromEntries(Object.entries(FUNCTIONS).map(([k, F]) =>
        [k, xs.map((x) => [F.f(x, 0.2), F.df(x, 0.2)])]))));""")
    a = np.float64(0.2)
    package = {'sigmoid': (sigmoid, sigmoid_grad), 'tanh': (tanh, tanh_grad), 'relu': (relu, relu_grad),
               'leaky_relu': (lambda x: leaky_relu(x, a), lambda x: leaky_relu_grad(x, a))}
    for name, (f, df) in package.items():
        np.testing.assert_allclose(np.array(out[name]), np.stack([f(np.array(xs)), df(np.array(xs))], 1), rtol=1e-12, atol=1e-15)


# -------------------------------------------------------------------------------------------- the saved notebooks
def saved_widgets(nb_path):
    "The course widgets a notebook shows, in display order: [(kind, saved state)]; and the notebook's widget state"
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    state = (nb.get('metadata', {}).get('widgets') or {}).get(STATE_MIME, {}).get('state', {})
    shown = []
    for cell in nb['cells']:
        for o in cell.get('outputs', []):
            view = o.get('data', {}).get(WIDGET_MIME)
            if view is None: continue
            model = state.get(view['model_id'])
            assert model is not None, f"{nb_path.name}: a widget view whose state was not saved (execute the notebook)"
            kind = model['state'].get('_dlcourse_widget')
            if kind: shown.append((kind, model['state']))
    return shown, state


NOTEBOOKS = sorted(p.stem for p in NBS.glob('*.ipynb'))


@pytest.mark.parametrize('name', sorted(LESSON_WIDGETS))
def test_lesson_shows_its_widgets_with_saved_state(name):
    path = NBS/f'{name}.ipynb'
    if not path.exists(): pytest.fail(f'{path} is missing')
    kinds = {k for k, _ in saved_widgets(path)[0]}
    missing = LESSON_WIDGETS[name] - kinds
    assert not missing, f'{name} shows no {sorted(missing)}: add the "explore it" cell (see nbs/10_widgets.ipynb) and re-execute'


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_saved_widget_state_is_small(name):
    _, state = saved_widgets(NBS/f'{name}.ipynb')
    size = len(json.dumps(state))
    assert size < MAX_NOTEBOOK_STATE, f'{name}: {size:,} bytes of widget state'


def test_nbdev_clean_keeps_the_widget_state():
    clean_nb = require('nbdev.clean', 'docs').clean_nb
    nb = json.loads((NBS/'10_widgets.ipynb').read_text(encoding='utf-8'))
    cleaned = copy.deepcopy(nb)
    clean_nb(cleaned)
    assert cleaned['metadata']['widgets'] == nb['metadata']['widgets']
    views = lambda n: [o['data'][WIDGET_MIME] for c in n['cells'] for o in c.get('outputs', []) if WIDGET_MIME in o.get('data', {})]
    assert views(cleaned) == views(nb) and len(views(nb)) == 6


def test_saved_front_ends_are_what_ships_now():
    "Every course widget in the saved notebooks carries the bundled front end and the stylesheet that ship now"
    css, stale = (STATIC/'widgets.css').read_text(encoding='utf-8'), []
    for name in NOTEBOOKS:
        for kind, state in saved_widgets(NBS/f'{name}.ipynb')[0]:
            esm = bundle(next(cls for cls, k in KINDS.items() if k == kind)).read_text(encoding='utf-8')
            if (state['_esm'], state['_css']) != (esm, css): stale.append(f'{name} ({kind})')
    assert not stale, f'saved with an older front end (re-execute these notebooks): {", ".join(sorted(set(stale)))}'


def test_saved_lenet5_data_is_what_ships_now():
    "The convolution explorer's LeNet-5 filters and the viewer's probabilities in the saved notebooks come from the weights that ship now"
    from dlcourse.zoo import lenet5
    net = lenet5(pretrained=True).eval()
    c1 = net.c1.weight.data[:, 0].astype(np.float64)
    images, _ = _sample_images()
    for name in NOTEBOOKS:
        for kind, state in saved_widgets(NBS/f'{name}.ipynb')[0]:
            stale = f'{name}.ipynb holds the state of other LeNet-5 weights than dlcourse ships: re-execute it'
            if kind == 'conv-explorer':
                lenet = [state['filters'][k] for k in sorted(state['filters']) if k.startswith('LeNet-5')]
                np.testing.assert_array_equal(np.array(lenet), c1, err_msg=stale)
            if kind == 'feature-map-viewer':
                px = np.stack([np.frombuffer(base64.b64decode(im['pixels']), np.uint8).reshape(28, 28)
                               for im in state['images']])
                probs = softmax(net(preprocess(px)).astype(np.float64), axis=1)
                # 6 decimals, from a float32 network on the CPU that ran the notebook (logits differ by ~1e-6 between CPUs)
                np.testing.assert_allclose([im['probs'] for im in state['images']], probs, atol=1e-4, err_msg=stale)


# ---------------------------------------------------------------------------------- the kernel-side dashboard
def test_learner_draws_live_learning_curves_in_notebooks(monkeypatch):
    "Learner.fit in a notebook: one figure of loss and accuracy, displayed once and updated after every epoch"
    import IPython.display
    import matplotlib
    matplotlib.use('Agg')
    from dlcourse import learner as L
    from dlcourse.activations import ReLU
    from dlcourse.core import Sequential, manual_seed
    from dlcourse.data import DataLoader
    from dlcourse.layers import Linear
    from dlcourse.losses import CrossEntropyLoss
    from dlcourse.optim import SGD
    calls = []

    class Handle:
        def update(self, fig): calls.append(('update', fig))

    def display(obj, display_id=None, **kw):
        calls.append(('display', obj, display_id))
        return Handle()
    monkeypatch.setattr(IPython.display, 'display', display)
    monkeypatch.setattr(L, '_in_notebook', lambda: True)
    manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 2)).astype(np.float32), rng.integers(0, 2, 64)
    model = Sequential(Linear(2, 8), ReLU(), Linear(8, 2))
    learn = L.Learner(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), DataLoader(x, y, batch_size=16, seed=0),
                      DataLoader(x, y, batch_size=64, shuffle=False))
    learn.fit(3, progress=False)                              # plot='auto': live curves because this is a "notebook"
    assert [c[0] for c in calls] == ['display', 'update', 'update'] and calls[0][2] is True
    fig = calls[0][1]
    assert [ax.get_title() for ax in fig.axes] == ['loss', 'accuracy']
    assert all(len(line.get_xdata()) == 3 for ax in fig.axes for line in ax.get_lines())
