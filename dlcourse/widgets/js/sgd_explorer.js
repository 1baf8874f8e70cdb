// The SGD explorer's front end (dlcourse.widgets.SGDExplorer): mini-batch SGD with momentum on a two-weight problem,
// its path on the loss contours and its loss after every step.
import {h, s, fmt, sig, rangeControl, choiceControl, numberControl, readout, statusLine, plotFrame, pathData, redrawer,
        widgetRoot} from './lib.js';

const LEARNING_RATES = [0.001, 0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3];
const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64];
function random32(seed) {         // mulberry32; Python repeats it exactly (dlcourse.widgets.sgd_explorer._random32)
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}
function permutation(n, rand) {   // Fisher-Yates, j = floor(r (i + 1) / 2^32)
  const p = Array.from({length: n}, (_, i) => i);
  for (let i = n - 1; i > 0; i--) { const j = Math.floor((rand() / 4294967296) * (i + 1)); [p[i], p[j]] = [p[j], p[i]]; }
  return p;
}
function loss(X, y, w) { let E = 0; for (let n = 0; n < X.length; n++) { const r = X[n][0] * w[0] + X[n][1] * w[1] - y[n]; E += r * r; } return E / (2 * X.length); }
function sgd(X, y, w0, lr, B, mu, steps, seed) {
  const N = X.length, rand = random32(seed), path = [w0.slice()], losses = [loss(X, y, w0)];
  let w = w0.slice(), v = null, order = null, pos = N, diverged = null;
  for (let k = 0; k < steps; k++) {
    if (pos >= N) { order = permutation(N, rand); pos = 0; }     // a new epoch: a new random order
    const batch = order.slice(pos, pos + B);
    pos += B;
    let g0 = 0, g1 = 0;
    for (const n of batch) { const r = X[n][0] * w[0] + X[n][1] * w[1] - y[n]; g0 += r * X[n][0]; g1 += r * X[n][1]; }
    g0 /= batch.length; g1 /= batch.length;
    if (mu > 0) { v = v === null ? [g0, g1] : [mu * v[0] + g0, mu * v[1] + g1]; [g0, g1] = v; }
    w = [w[0] - lr * g0, w[1] - lr * g1];
    const E = loss(X, y, w);
    path.push(w); losses.push(E);
    if (!(E <= 1e12)) { diverged = k + 1; break; }
  }
  return {path, losses, diverged};
}
// The verdict on a run, from its last steps, not only the last one (a loss that still swings has not converged):
// [kind, text] for the run's excess losses E - E* (ex, one per step), the start's excess ex0 and the steps taken
function verdict(run, ex, ex0, steps) {
  const last = ex[ex.length - 1];
  if (run.diverged) return ['diverged', `Diverged at step ${run.diverged}: the loss exploded. Lower the learning rate (or the momentum).`];
  if (last > ex0) return ['unstable', `Unstable: after ${steps} steps the loss is higher than at the start. Lower α or μ, or take larger batches.`];
  const k = Math.max(5, Math.ceil(ex.length / 5)), tail = ex.slice(-k), hi = Math.max(...tail), lo = Math.min(...tail);
  const tol = 1e-3 * ex0;
  if (hi < tol) return ['converged', `Converged: E − E* is ${sig(last)} after ${steps} steps, and below ${sig(tol)} over the last ${k}.`];
  const rises = tail.some((v, i) => i > 0 && v > 2 * tail[i - 1]);        // up again by more than a factor of 2
  if (rises && hi > 10 * Math.max(lo, 1e-12)) {
    return ['oscillating', `Not settled: over the last ${k} steps E − E* still swings between ${sig(lo)} and ${sig(hi)}. `
                           + 'Lower α or μ, or take larger batches.'];
  }
  return ['running', `Still on the way: E − E* is ${sig(last)} after ${steps} steps.`];
}

function render({ model, el }) {
  const root = widgetRoot(el, 'sgd-explorer', 'Mini-batch SGD with momentum on a two-weight problem');
  const X = model.get('X'), y = model.get('y'), N = X.length;
  // the minimum: w* = H^-1 b with H = X^T X / N, b = X^T y / N; H also gives the contours (ellipses)
  let h00 = 0, h01 = 0, h11 = 0, b0 = 0, b1 = 0;
  for (let n = 0; n < N; n++) { h00 += X[n][0] ** 2 / N; h01 += (X[n][0] * X[n][1]) / N; h11 += X[n][1] ** 2 / N; b0 += (X[n][0] * y[n]) / N; b1 += (X[n][1] * y[n]) / N; }
  const det = h00 * h11 - h01 * h01, wstar = [(h11 * b0 - h01 * b1) / det, (h00 * b1 - h01 * b0) / det], Emin = loss(X, y, wstar);
  const mid = (h00 + h11) / 2, rad = Math.sqrt(((h00 - h11) / 2) ** 2 + h01 ** 2), lam = [mid + rad, mid - rad];
  const e1 = Math.abs(h01) > 1e-12 ? (() => { const v = [lam[0] - h11, h01], n = Math.hypot(...v); return [v[0] / n, v[1] / n]; })()
                                   : (h00 >= h11 ? [1, 0] : [0, 1]);
  const e2 = [-e1[1], e1[0]];

  const save = (k) => (v) => { model.set(k, v); model.save_changes(); };
  const lrs = [...new Set(LEARNING_RATES.concat([model.get('lr')]))].sort((a, b) => a - b);
  const bss = [...new Set(BATCH_SIZES.filter((b) => b <= N).concat([model.get('batch_size'), N]))].sort((a, b) => a - b);
  const cLr = choiceControl({label: 'learning rate α', aria: 'learning rate α', values: lrs, value: model.get('lr'), testid: 'lr-value', onInput: save('lr')});
  const cB = choiceControl({label: 'batch size B', aria: 'batch size B', values: bss, value: model.get('batch_size'), testid: 'batch-size-value', onInput: save('batch_size')});
  const cMu = rangeControl({label: 'momentum μ', aria: 'momentum μ', min: 0, max: 0.99, step: 0.01, value: model.get('momentum'), testid: 'momentum-value', onInput: save('momentum')});
  const cSteps = rangeControl({label: 'steps', aria: 'number of steps', min: 10, max: 300, step: 10, value: model.get('steps'), testid: 'steps-value', format: String, onInput: save('steps')});
  const cSeed = numberControl({label: 'random seed', aria: 'random seed of the batch order', min: 0, max: 4294967295, value: model.get('seed'), onInput: save('seed')});
  const rLoss = readout('final E =', 'loss'), rEx = readout('E − E* =', 'excess'), rW1 = readout('w₁ =', 'w1'), rW2 = readout('w₂ =', 'w2');
  const rEp = readout('epochs:', 'epochs');
  const status = statusLine('status');
  const plane = s('svg', {class: 'dlw-plot', viewBox: '0 0 340 340', width: 340, role: 'img', 'aria-label': 'the paths of the weights on the contours of the loss'});
  const curves = s('svg', {class: 'dlw-plot', viewBox: '0 0 390 340', width: 390, role: 'img', 'aria-label': 'the loss after every step'});
  const legend = h('div', {class: 'dlw-legend'}, [
    h('span', {}, [h('span', {class: 'dlw-swatch', style: 'background:#0969da'}), 'SGD with the settings above']),
    h('span', {}, [h('span', {class: 'dlw-swatch', style: 'background:#8c959f'}), 'gradient descent: all 64 points, no momentum, same α']),
    h('span', {}, ['✕ the minimum w*'])]);
  root.append(h('div', {class: 'dlw-controls'}, [cLr.el, cB.el, cMu.el, cSteps.el, cSeed.el]),
              h('div', {class: 'dlw-readouts'}, [rLoss.el, rEx.el, rW1.el, rW2.el, rEp.el]), status.el,
              h('div', {class: 'dlw-row'}, [plane, curves]), legend);

  const draw = () => {
    const lr = model.get('lr'), B = model.get('batch_size'), mu = model.get('momentum'), steps = model.get('steps'), seed = model.get('seed');
    const w0 = model.get('w0');
    cLr.set(lr); cB.set(B); cMu.set(mu); cSteps.set(steps); cSeed.set(seed);
    const run = sgd(X, y, w0, lr, B, mu, steps, seed), ref = sgd(X, y, w0, lr, N, 0, steps, seed);
    const w = run.path[run.path.length - 1], E = run.losses[run.losses.length - 1];
    rLoss.set(E, sig(E)); rEx.set(E - Emin, sig(E - Emin)); rW1.set(w[0], sig(w[0])); rW2.set(w[1], sig(w[1]));
    rEp.set((run.losses.length - 1) * B / N, `${fmt(((run.losses.length - 1) * B) / N, 2)} (${Math.ceil(N / B)} ${N > B ? 'steps' : 'step'} each)`);
    const [kind, text] = verdict(run, run.losses.map((v) => v - Emin), loss(X, y, w0) - Emin, steps);
    status.set(text, {converged: 'good', running: 'warn', oscillating: 'warn'}[kind] || 'bad', kind);

    plane.replaceChildren();
    const L = 1.3 * Math.max(Math.abs(w0[0] - wstar[0]), Math.abs(w0[1] - wstar[1]));
    const {X: px, Y: py, g} = plotFrame(plane, {x: 44, y: 10, w: 290, h: 290, xlim: [wstar[0] - L, wstar[0] + L],
                                                ylim: [wstar[1] - L, wstar[1] + L], xlabel: 'w₁', ylabel: 'w₂'});
    const E0 = loss(X, y, w0) - Emin;
    for (let k = -1; k < 7; k++) {                     // contours E = E* + c: ellipses with radii sqrt(2c/λ)
      const c = E0 * 4 ** -k, r1 = Math.sqrt((2 * c) / lam[0]), r2 = Math.sqrt((2 * c) / lam[1]);
      const pts = Array.from({length: 97}, (_, i) => { const th = (2 * Math.PI * i) / 96, a = r1 * Math.cos(th), b = r2 * Math.sin(th);
        return [px(wstar[0] + a * e1[0] + b * e2[0]), py(wstar[1] + a * e1[1] + b * e2[1])]; });
      g.append(s('path', {d: pathData(pts) + 'Z', fill: 'none', stroke: '#d0d7de'}));
    }
    for (const [r, color, width] of [[ref, '#8c959f', 1.5], [run, '#0969da', 1.8]]) {
      g.append(s('path', {d: pathData(r.path.map((p) => [px(p[0]), py(p[1])])), fill: 'none', stroke: color, 'stroke-width': width}));
      for (const p of r.path) if (Math.abs(p[0]) < 1e6 && Math.abs(p[1]) < 1e6) g.append(s('circle', {cx: px(p[0]), cy: py(p[1]), r: 1.8, fill: color}));
    }
    g.append(s('text', {x: px(wstar[0]), y: py(wstar[1]) + 4, 'text-anchor': 'middle', style: 'font-size:13px;fill:#cf222e', text: '✕'}));
    g.append(s('circle', {cx: px(w0[0]), cy: py(w0[1]), r: 4, fill: '#fff', stroke: '#1f2328'}));

    curves.replaceChildren();
    const ex = (r) => r.losses.map((E) => Math.max(E - Emin, 1e-9));
    const top = Math.max(...ex(ref), ...ex(run).filter(Number.isFinite)), lo = Math.min(...ex(ref), ...ex(run));
    const {X: cx, Y: cy, g: cg} = plotFrame(curves, {x: 52, y: 22, w: 330, h: 270, xlim: [0, steps], ylim: [Math.max(lo / 2, 1e-9), Math.min(top * 3, 1e13)],
      logy: true, xlabel: 'step', ylabel: 'E − E* (loss above its minimum)', title: 'loss after every step'});
    for (const [r, color] of [[ref, '#8c959f'], [run, '#0969da']]) {
      cg.append(s('path', {d: pathData(ex(r).map((v, k) => [cx(k), cy(v)])), fill: 'none', stroke: color, 'stroke-width': 1.6}));
    }
  };
  const redraw = redrawer(draw);
  for (const key of ['lr', 'batch_size', 'momentum', 'steps', 'seed']) model.on(`change:${key}`, redraw);
  draw();
}

export default { render };
export { random32, permutation, sgd, verdict };   // for the tests, which run them in Node.js
