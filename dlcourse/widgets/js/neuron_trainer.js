// The neuron trainer's front end (dlcourse.widgets.NeuronTrainer): one sigmoid unit trained with the delta rule in
// the browser, its decision boundary and its error after every step.
import {h, s, fmt, sigmoid, choiceControl, button, readout, plotFrame, pathData, DIVERGING, ramp, redrawer,
        widgetRoot} from './lib.js';

const LEARNING_RATES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20];
const MAX_ERRORS = 2000;         // the error curve keeps the last 2000 steps

function render({ model, el }) {
  const root = widgetRoot(el, 'neuron-trainer', 'One sigmoid unit trained with the delta rule');
  const X = model.get('X'), t = model.get('t'), P = X.length;
  const output = (w, b, x) => sigmoid(b + (x[0] * w[0] + x[1] * w[1]));
  const error = (w, b) => { let E = 0; for (let p = 0; p < P; p++) { const d = t[p] - output(w, b, X[p]); E += d * d; } return E / 2; };

  // one delta-rule step on pattern (steps mod P): the lecture's update, in float64 as in Python
  function train(n) {
    let w = model.get('w').slice(), b = model.get('b'), steps = model.get('steps');
    const lr = model.get('lr'), errors = model.get('errors').slice();
    for (let k = 0; k < n; k++) {
      const p = steps % P, x = X[p], y = output(w, b, x);
      const delta = y * (1 - y) * (t[p] - y);
      w = [w[0] + lr * delta * x[0], w[1] + lr * delta * x[1]];
      b += lr * delta;
      steps += 1;
      errors.push(error(w, b));
    }
    model.set('w', w); model.set('b', b); model.set('steps', steps);
    model.set('errors', errors.slice(-MAX_ERRORS));
    model.save_changes();
  }
  let timer = null;
  const stop = () => { if (timer !== null) clearInterval(timer); timer = null; play.textContent = 'play'; play.setAttribute('aria-label', 'play: keep training, one epoch per frame'); };
  const play = button('play', 'play: keep training, one epoch per frame', () => {
    if (timer !== null) return stop();
    timer = setInterval(() => { if (!root.isConnected) return stop(); train(P); }, 80);
    play.textContent = 'pause'; play.setAttribute('aria-label', 'pause training');
  });
  const lrs = [...new Set(LEARNING_RATES.concat([model.get('lr')]))].sort((a, b) => a - b);
  const lr = choiceControl({label: 'learning rate α', aria: 'learning rate α', values: lrs, value: model.get('lr'),
    testid: 'lr-value', onInput: (v) => { model.set('lr', v); model.save_changes(); }});
  const controls = h('div', {class: 'dlw-controls'}, [
    button('step', 'take one delta-rule step (one pattern)', () => train(1)),
    button('epoch', `take one epoch of delta-rule steps (all ${P} patterns)`, () => train(P)),
    play,
    button('reset', 'reset the weights to their initial values', () => {
      stop();
      const w0 = model.get('w0'), b0 = model.get('b0');
      model.set('w', w0.slice()); model.set('b', b0); model.set('steps', 0); model.set('errors', [error(w0, b0)]);
      model.save_changes();
    }),
    lr.el]);
  const rSteps = readout('step', 'steps'), rW1 = readout('w₁ =', 'w1'), rW2 = readout('w₂ =', 'w2'), rB = readout('b =', 'b');
  const rE = readout('E =', 'error'), rAcc = readout('correct:', 'accuracy');
  const W = 290, PAD = 34;
  const stack = h('div', {class: 'dlw-stack', style: `width:${W + PAD + 6}px;height:${W + PAD + 6}px`});
  const shade = h('canvas', {width: 48, height: 48, 'aria-hidden': 'true', style: `left:${PAD}px;top:6px;width:${W}px;height:${W}px`});
  const plane = s('svg', {class: 'dlw-plot', width: W + PAD + 6, height: W + PAD + 6, role: 'img',
                          'aria-label': 'the patterns, the decision boundary and the unit output'});
  stack.append(shade, plane);
  const curve = s('svg', {class: 'dlw-plot', viewBox: '0 0 400 330', width: 400, role: 'img', 'aria-label': 'the error after every step'});
  root.append(controls, h('div', {class: 'dlw-readouts'}, [rSteps.el, rW1.el, rW2.el, rB.el, rE.el, rAcc.el]),
              h('div', {class: 'dlw-row'}, [stack, curve]),
              h('div', {class: 'dlw-caption', text: 'Points: the patterns (blue t = 0, red t = 1); ring: the pattern the next '
                + 'step uses; line: the decision boundary b + w·x = 0; shading: the output y.'}));

  const lo = [0, 1].map((i) => Math.min(...X.map((x) => x[i]))), hi = [0, 1].map((i) => Math.max(...X.map((x) => x[i])));
  const pad = [0, 1].map((i) => 0.15 * (hi[i] - lo[i]) + 0.1);
  const xlim = [lo[0] - pad[0], hi[0] + pad[0]], ylim = [lo[1] - pad[1], hi[1] + pad[1]];

  const draw = () => {
    const w = model.get('w'), b = model.get('b'), steps = model.get('steps'), errors = model.get('errors');
    lr.set(model.get('lr'));
    rSteps.set(steps, `${steps} (epoch ${fmt(steps / P, 2)})`);
    rW1.set(w[0]); rW2.set(w[1]); rB.set(b);
    const E = error(w, b), right = X.filter((x, p) => (output(w, b, x) > 0.5 ? 1 : 0) === t[p]).length;
    rE.set(E); rAcc.set(right / P, `${right} of ${P}`);
    // the unit's output, shaded
    const ctx = shade.getContext('2d'), img = ctx.createImageData(48, 48);
    for (let i = 0; i < 48; i++) for (let j = 0; j < 48; j++) {
      const x = [xlim[0] + ((j + 0.5) / 48) * (xlim[1] - xlim[0]), ylim[1] - ((i + 0.5) / 48) * (ylim[1] - ylim[0])];
      const [r, g, bl] = ramp(DIVERGING, output(w, b, x)), k = 4 * (i * 48 + j);
      img.data[k] = r; img.data[k + 1] = g; img.data[k + 2] = bl; img.data[k + 3] = 120;
    }
    ctx.putImageData(img, 0, 0);
    plane.replaceChildren();
    const {X: px, Y: py, g} = plotFrame(plane, {x: PAD, y: 6, w: W, h: W, xlim, ylim});
    // the boundary b + w1 x1 + w2 x2 = 0, clipped to the plot
    if (Math.abs(w[1]) > 1e-12) {
      const x2 = (x1) => -(b + w[0] * x1) / w[1];
      g.append(s('path', {d: pathData([[px(xlim[0]), py(x2(xlim[0]))], [px(xlim[1]), py(x2(xlim[1]))]]), stroke: '#1f2328', 'stroke-width': 2}));
    } else if (Math.abs(w[0]) > 1e-12) {
      const x1 = -b / w[0];
      g.append(s('line', {x1: px(x1), x2: px(x1), y1: 6, y2: 6 + W, stroke: '#1f2328', 'stroke-width': 2}));
    }
    X.forEach((x, p) => g.append(s('circle', {cx: px(x[0]), cy: py(x[1]), r: 4.5, stroke: '#1f2328', 'stroke-width': 0.8,
                                              fill: t[p] > 0.5 ? '#cf222e' : '#0969da'})));
    const nxt = X[steps % P];
    g.append(s('circle', {cx: px(nxt[0]), cy: py(nxt[1]), r: 9, fill: 'none', stroke: '#bf8700', 'stroke-width': 2.5}));
    // the error curve
    curve.replaceChildren();
    const first = steps - errors.length + 1, xs = errors.map((_, i) => first + i);
    const emin = Math.max(Math.min(...errors), 1e-6), emax = Math.max(...errors, emin * 10);
    const {X: cx, Y: cy, g: cg} = plotFrame(curve, {x: 52, y: 20, w: 330, h: 260, xlim: [Math.min(first, steps - 1), Math.max(steps, 1)],
      ylim: [emin / 1.5, emax * 1.5], logy: true, xlabel: 'step', ylabel: 'error E', title: 'E = ½ Σ (t − y)² after every step'});
    cg.append(s('path', {d: pathData(xs.map((k, i) => [cx(k), cy(Math.max(errors[i], 1e-300))])), fill: 'none', stroke: '#0969da', 'stroke-width': 1.5}));
  };
  const redraw = redrawer(draw);
  for (const k of ['w', 'b', 'steps', 'errors', 'lr']) model.on(`change:${k}`, redraw);
  draw();
  return stop;                   // anywidget calls this when the view is removed
}

export default { render };
