"""Browser tests of the course's widgets on the documentation website, which must work with no kernel and no internet.

The site is built and served, and opened in headless Debian Chromium with every request off 127.0.0.1 aborted, with the
helpers of tests/test_site.py (imported, not repeated). Every page that holds widgets must load without a failed request
or a console error, render all its widget views and label every control. Then each widget is driven through its
controls on each page that shows it, and what it shows must be what the package computes: the values of the activation
functions, the weights of n delta-rule steps, the output size and "Passt nicht!", an activation map equal to
`dlcourse.conv2d`, the pooled maps, the path of the package's SGD, the network's maps and probabilities. The expected
values come from the notebook's saved state (what the page holds) and from the package.

Screenshots go to `_docs_screenshots/widgets-course/`.

Sharing: the site's build, server and browser are tests/test_site.py's fixtures. Its `browser` holds Playwright's sync API
in the main thread for the whole session, and that API allows one instance per thread, so this module runs the same two
fixtures, `browser` and `open_page` (their code as it is, through `__wrapped__`), in a thread of its own and makes every
browser call there. (With the fixtures in tests/conftest.py both modules would share one browser and one build.)
"""
import base64
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import test_site
from test_site import NBS, SCREENSHOTS, course_site, html_name, node_modules, serve, visit  # noqa: F401 (fixtures)
from test_widgets import saved_widgets

from dlcourse.activations import (leaky_relu, leaky_relu_grad, relu, relu_grad, sigmoid, sigmoid_grad, tanh,
                                  tanh_grad)
from dlcourse.conv import conv2d
from dlcourse.data import normalize
from dlcourse.neuron import SigmoidNeuron
from dlcourse.pool import avg_pool2d, max_pool2d, sum_pool2d
from dlcourse.widgets import SGDExplorer

SHOTS = SCREENSHOTS/'widgets-course'
# {notebook: [(kind, saved state), ...] in display order}, for every notebook that shows a course widget
SHOWN = {p.stem: w for p in sorted(NBS.glob('*.ipynb')) if (w := saved_widgets(p)[0])}
CASES = [(nb, kind) for nb, shown in SHOWN.items() for kind in dict.fromkeys(k for k, _ in shown)]

CONTROLS_JS = """() => [...document.querySelectorAll('.dlw-root')].map((root) => ({
  kind: root.dataset.dlw,
  controls: [...root.querySelectorAll('input, select, button, textarea')].filter((c) => c.offsetParent !== null).map((c) => ({
    tag: c.tagName.toLowerCase(), aria: (c.getAttribute('aria-label') || '').trim(),
    visible: (c.tagName === 'BUTTON' ? c.innerText : ((c.closest('label') || {}).querySelector
              ? (c.closest('label').querySelector('.dlw-label') || {}).innerText || '' : '')).trim()})),
  outputs: [...root.querySelectorAll('output')].map((o) => o.dataset.testid || ''),
}))"""


@pytest.fixture(scope='module')
def browser_thread(node_modules):
    "test_site's `browser` and `open_page`, run in a thread of their own: (run(fn, *args) in that thread, open_page())"
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix='dlcourse-chromium')

    def run(fn, *args): return pool.submit(fn, *args).result()
    browsers = test_site.browser.__wrapped__()
    pages = test_site.open_page.__wrapped__(run(next, browsers))
    try: yield run, run(next, pages)
    finally:
        for fixture in (pages, browsers): run(next, fixture, None)       # their teardown: close pages, then Chromium
        pool.shutdown()


@pytest.fixture(scope='module')
def widget_pages(browser_thread, course_site, serve):
    """Every page with widgets, opened once and kept open for its widget tests:
    (run, {notebook: (Visit, page, [{kind, controls, outputs} per widget, as rendered])})"""
    run, open_page = browser_thread
    base = serve(course_site)
    if SHOTS.exists(): shutil.rmtree(SHOTS)

    def open_all():
        out = {}
        for nb in SHOWN:
            page = open_page()
            v = visit(page, base, html_name(nb), SHOTS/f'{html_name(nb)[:-5]}.png')
            out[nb] = (v, page, page.evaluate(CONTROLS_JS))
        return out
    pages = run(open_all)
    yield run, pages
    run(lambda: [page.close() for _, page, _ in pages.values()])


def test_widgets_are_on_their_pages():
    "The lessons and the deep dive show widgets (test_widgets.py checks which)"
    assert {'01_sigmoid_neuron', '04_relu', '05_pooling', '07_sgd', '10_widgets'} <= set(SHOWN)
    assert len(SHOWN['10_widgets']) == 6


@pytest.mark.parametrize('nb', list(SHOWN))
def test_widget_page_loads_offline_and_renders(widget_pages, nb):
    v, page, widgets = widget_pages[1][nb]
    failed = v.failed + [f'{u} (aborted: not 127.0.0.1)' for u in page.blocked]
    assert not failed, f'{v.url}: failed requests:\n' + '\n'.join(failed)
    assert not v.errors, f'{v.url}: console errors:\n' + '\n'.join(v.errors)
    s = v.stats
    assert s['views'] == s['rendered'] and s['widget_errors'] == 0, s
    assert [w['kind'] for w in widgets] == [k for k, _ in SHOWN[nb]], 'every saved course widget renders, in order'


@pytest.mark.parametrize('nb', list(SHOWN))
def test_every_control_is_labelled(widget_pages, nb):
    "Every control: a visible label and an aria-label; every shown value: a data-testid"
    for w in widget_pages[1][nb][2]:
        assert w['controls'], w['kind']
        unlabelled = [c for c in w['controls'] if not (c['aria'] and c['visible'])]
        assert not unlabelled, f"{w['kind']}: controls without a visible label or aria-label: {unlabelled}"
        assert all(w['outputs']), f"{w['kind']}: an <output> without data-testid"


# -------------------------------------------------------------------------------------------- driving the widgets
class Widget:
    "The first widget of a kind on a page: set its controls, read its values (data-value, JSON)"
    def __init__(self, page, kind): self.page, self.root = page, page.locator(f'.dlw-root[data-dlw="{kind}"]').first
    def control(self, aria): return self.root.locator(f'[aria-label="{aria}"]')
    def set(self, aria, value): self.control(aria).fill(str(value))
    def choose(self, aria, value): self.control(aria).select_option(str(value))
    def click(self, aria, times=1):
        for _ in range(times): self.control(aria).click()
    def value(self, testid): return json.loads(self.root.locator(f'[data-testid="{testid}"]').first.get_attribute('data-value'))
    def text(self, testid): return self.root.locator(f'[data-testid="{testid}"]').first.inner_text()


def check_activation_explorer(w, state):
    functions = state['functions']
    if 'sigmoid' in functions:
        w.choose('activation function', 'sigmoid')
        w.set('pre-activation value x', 0)
        assert (w.value('value'), w.value('gradient')) == (0.5, 0.25)          # the lecture: σ(0) = 1/2, σ'(0) = 1/4
        assert w.text('value') == '0.5' and w.text('gradient') == '0.25' and not w.value('saturation')
        w.set('pre-activation value x', 7)
        assert w.value('saturation') is True and 'saturated' in w.text('saturation')
    if 'leaky_relu' in functions:
        w.choose('activation function', 'leaky_relu')
        w.set('negative slope α of leaky ReLU', 0.2)
    a = np.float64(w.value('alpha-value'))
    package = {'sigmoid': (sigmoid, sigmoid_grad), 'tanh': (tanh, tanh_grad), 'relu': (relu, relu_grad),
               'leaky_relu': (lambda x: leaky_relu(x, a), lambda x: leaky_relu_grad(x, a))}
    for name in functions:
        w.choose('activation function', name)
        f, df = package[name]
        for x in (-6.5, -1.25, 0.0, 0.7, 3.0):
            w.set('pre-activation value x', x)
            assert w.value('value') == pytest.approx(f(x), rel=1e-12, abs=1e-15), (name, x)
            assert w.value('gradient') == pytest.approx(df(x), rel=1e-12, abs=1e-15), (name, x)
    if 'relu' in functions:
        w.choose('activation function', 'relu')
        w.set('pre-activation value x', -1)
        assert w.value('gradient') == 0 and 'inactive' in w.text('saturation')


def check_neuron_trainer(w, state):
    X, t, P = np.array(state['X']), np.array(state['t']), len(state['X'])
    w.click('reset the weights to their initial values')
    assert w.value('w1') == state['w0'][0] and w.value('steps') == 0
    w.set('learning rate α', 7)                                     # an index into the slider's learning rates
    lr = w.value('lr-value')
    w.click('take one delta-rule step (one pattern)', times=3)
    w.click(f'take one epoch of delta-rule steps (all {P} patterns)')
    n = 3 + P
    unit = SigmoidNeuron(2, rng=0)
    unit.w, unit.b = np.array(state['w0']), state['b0']
    for k in range(n): unit.delta_rule_step(X[k % P], t[k % P], lr)
    assert w.value('steps') == n
    np.testing.assert_allclose([w.value('w1'), w.value('w2'), w.value('b')], [*unit.w, unit.b], rtol=1e-12, atol=1e-14)
    assert w.value('error') == pytest.approx(unit.error(X, t), rel=1e-12)
    assert w.value('accuracy') == np.mean(unit.predict(X) == t)


def _image(state, k):
    im = state['images'][k]
    return np.frombuffer(base64.b64decode(im['pixels']), np.uint8).reshape(im['shape'])


def check_conv_explorer(w, state):
    def size(I, F, S, P):
        for aria, v in (('input size I', I), ('filter size F', F), ('stride S', S), ('zero padding P', P)): w.set(aria, v)
    size(32, 5, 1, 0)
    assert w.value('output-size') == 28 and w.text('output-size').endswith('= 28') and w.value('fit') is True
    size(7, 3, 3, 0)                                               # the lecture's "Passt nicht!"
    assert w.value('fit') is False and 'Passt nicht!' in w.text('fit') and '4/3 + 1' in w.text('output-size')
    size(7, 3, 3, 1)
    assert w.value('output-size') == 3 and w.value('fit') is True
    size(7, 9, 1, 0)
    assert w.value('fit') is False and 'larger than the padded input' in w.text('fit')
    size(7, 5, 3, 0)                                               # one position, 2 pixels left over: singular
    assert w.value('output-size') == pytest.approx(5 / 3) and 'after 1 position ' in w.text('fit')
    # AlexNet's first layer, one click away: 227 is beyond the slider, in the number box (up to 256)
    w.click("AlexNet 227, 11, 4, 0: AlexNet's first layer, I = 227, F = 11, S = 4, P = 0")
    assert (w.value('I-value'), w.value('output-size'), w.value('fit')) == (227, 55, True)
    assert w.text('output-size').endswith('= 55')
    w.set('input size I, typed (1 to 256)', 256)
    assert w.value('I-value') == 256 and w.value('output-size') == 62.25 and w.value('fit') is False   # (256 - 11)/4 + 1
    w.set('input size I, typed (1 to 256)', 300)                   # refused out loud, the widget keeps 256
    assert w.control('input size I, typed (1 to 256)').get_attribute('aria-invalid') == 'true'
    assert w.value('I-value') == 256
    play = w.root.locator('button.dlw-button', has_text=re.compile(r'^(play|pause)$')).first     # its text changes
    play.click()
    assert play.inner_text() == 'pause' and play.get_attribute('aria-label').startswith('pause')
    play.click()
    assert play.inner_text() == 'play' and play.get_attribute('aria-label').startswith('play')
    lenet = [k for k in state['filters'] if k.startswith('LeNet-5')]
    for image, name, S, P in ((3, 'vertical edges', 1, 0), (5, 'sharpen', 2, 1), (1, lenet[1] if lenet else 'blur', 1, 2),
                              (8, lenet[-1] if lenet else 'blur', 3, 0)):
        size(28, 5, S, P)
        w.choose('Fashion-MNIST image', image)
        w.choose('filter applied to the image', name)
        x = normalize(_image(state, image) / 255.0)
        weights = np.array(state['filters'][name])
        expected = conv2d(x[None, None], weights[None, None], stride=S, padding=P)[0, 0]
        shown = np.array(w.value('activation-map'))
        assert shown.shape == expected.shape and w.value('map-size') == expected.shape[0]
        np.testing.assert_allclose(shown, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def check_pooling_explorer(w, state):
    w.choose('input activation map', 0)
    for (mode, F, S), expected in {('max', 2, 2): [[6, 8], [3, 4]], ('sum', 2, 2): [[13, 21], [8, 8]],
                                   ('avg', 2, 2): [[3.25, 5.25], [2, 2]], ('max', 3, 1): [[7, 8], [7, 8]]}.items():
        w.choose('pooling function', mode); w.set('window size F', F); w.set('stride S', S)
        assert w.value('output') == expected, (mode, F, S)
    assert w.value('overlap') is True and 'Overlapping' in w.text('overlap')
    w.set('stride S', 3)
    assert w.value('overlap') is False
    w.choose('pooling function', 'max'); w.set('window size F', 3); w.set('stride S', 2)   # 4 x 4: one window, a row left
    assert w.value('output') == [[7]] and w.value('fit') is False and 'Passt nicht!' in w.text('fit')
    assert 'the last 1 row and 1 column' in w.text('fit')
    assert w.value('overlap') is False and 'only 1 window fits' in w.text('overlap')
    w.set('window size F', 5)                                      # larger than the map: no output, the map stays
    assert w.value('output') is None and 'larger than the map' in w.text('fit')
    assert w.root.locator('svg[aria-label="the input map with the window"] rect').count() >= 16
    if len(state['maps']) > 1:                                     # a real activation map, with every pooling
        m = np.array(state['maps'][1]['values'])[None, None]
        w.choose('input activation map', 1)
        for mode, f in (('max', max_pool2d), ('sum', sum_pool2d), ('avg', avg_pool2d)):
            for F, S in ((2, 2), (3, 2), (3, 1)):
                w.choose('pooling function', mode); w.set('window size F', F); w.set('stride S', S)
                np.testing.assert_allclose(w.value('output'), f(m, F, S)[0, 0], rtol=1e-12, atol=1e-12)
                assert w.value('output-size') == list(f(m, F, S).shape[2:])


def check_sgd_explorer(w, state):
    py = SGDExplorer()
    py.X, py.y, py.w0 = state['X'], state['y'], state['w0']        # the page's problem
    for lr_index, B_index, mu, steps, seed in ((5, 3, 0.0, 100, 0), (3, 0, 0.9, 200, 7), (6, 6, 0.5, 50, 3)):
        w.set('learning rate α', lr_index); w.set('batch size B', B_index); w.set('momentum μ', mu)
        w.set('number of steps', steps); w.set('random seed of the batch order', seed)
        lr, B = w.value('lr-value'), w.value('batch-size-value')
        assert (w.value('momentum-value'), w.value('steps-value')) == (mu, steps)
        run = py.run(lr=lr, batch_size=B, momentum=mu, steps=steps, seed=seed)
        np.testing.assert_allclose([w.value('w1'), w.value('w2')], run['path'][-1], rtol=1e-12, atol=1e-12)
        assert w.value('loss') == pytest.approx(run['losses'][-1], rel=1e-12)
        assert w.value('excess') == pytest.approx(run['losses'][-1] - py.minimum[1], rel=1e-6, abs=1e-12)
    w.set('learning rate α', 10); w.set('batch size B', 6); w.set('momentum μ', 0)          # α = 0.3: too large
    assert w.value('status') == 'diverged' and 'Diverged' in w.text('status')
    # the verdict reads the last steps: with momentum 0.9 the loss still swings at step 100 (not "Converged")
    w.set('learning rate α', 5); w.set('batch size B', 3); w.set('momentum μ', 0.9)         # α = 0.05, B = 8
    w.set('number of steps', 100); w.set('random seed of the batch order', 0)
    assert w.value('status') == 'oscillating' and 'swings between' in w.text('status')
    w.set('momentum μ', 0)
    assert w.value('status') == 'converged'
    loss = w.value('loss')
    w.set('random seed of the batch order', -3)                     # refused out loud; the run stays the seed-0 one
    seed = w.control('random seed of the batch order')
    assert seed.get_attribute('aria-invalid') == 'true' and w.value('loss') == loss
    assert 'still showing 0' in w.root.locator('#' + seed.get_attribute('aria-describedby')).inner_text()


def check_feature_map_viewer(w, state):
    layers, classes = state['layers'], state['classes']
    for image, layer, channel in ((0, 0, 0), (4, 2, 9), (len(state['images']) - 1, len(layers) - 1, 3)):
        w.choose('input image', image); w.choose('layer whose feature maps are shown', layer)
        L = layers[layer]
        w.click(f"show channel {channel + 1} of {L['label']}")
        assert w.value('channel-value') == channel
        im = state['images'][image]
        q = np.frombuffer(base64.b64decode(im['maps']), np.uint8)
        start = sum(l['C'] * l['H'] * l['W'] for l in layers[:layer]) + channel * L['H'] * L['W']
        lo, hi = im['ranges'][layer][channel]
        expected = lo + q[start:start + L['H'] * L['W']].reshape(L['H'], L['W']) / 255 * (hi - lo)
        np.testing.assert_allclose(w.value('feature-map'), expected, rtol=1e-12, atol=1e-12)
        assert w.value('probabilities') == im['probs']
        assert w.value('true-class') == im['label'] and w.value('prediction') == classes[int(np.argmax(im['probs']))]
    # the words: "an ankle boot", tiny probabilities as "< 0.1%", never in exponent notation
    boots = [k for k, im in enumerate(state['images']) if im['label'] == 'Ankle boot']
    if boots:
        w.choose('input image', boots[0])
        assert w.root.locator('[aria-label="the input image: an ankle boot"]').count() == 1
    tiny = [k for k, im in enumerate(state['images']) if 0 < min(im['probs']) < 5e-4]
    if tiny:
        w.choose('input image', tiny[0])
        text = w.text('probabilities')
        assert '< 0.1%' in text and 'e-' not in text, text


CHECKS = {'activation-explorer': check_activation_explorer, 'neuron-trainer': check_neuron_trainer,
          'conv-explorer': check_conv_explorer, 'pooling-explorer': check_pooling_explorer,
          'sgd-explorer': check_sgd_explorer, 'feature-map-viewer': check_feature_map_viewer}


@pytest.mark.parametrize('nb,kind', CASES, ids=[f'{nb}-{kind}' for nb, kind in CASES])
def test_widget_shows_what_the_package_computes(widget_pages, nb, kind):
    "Set the widget's controls in the browser, with no kernel and no network: it shows the package's numbers"
    run, pages = widget_pages
    v, page, _ = pages[nb]

    def drive():
        w = Widget(page, kind)
        w.root.scroll_into_view_if_needed()
        CHECKS[kind](w, next(s for k, s in SHOWN[nb] if k == kind))
        w.root.screenshot(path=str(SHOTS/f"{html_name(nb)[:-5]}-{kind}.png"))
    run(drive)
    failed = v.failed + [f'{u} (aborted: not 127.0.0.1)' for u in page.blocked]
    assert not failed and not v.errors, (failed, v.errors)       # the page's listeners record what the widget did, too
