// The activation explorer's front end (dlcourse.widgets.ActivationExplorer): an activation function and its
// derivative, the tangent at x, and where the unit saturates.
import {h, s, fmt, pct, sigmoid, rangeControl, selectControl, readout, statusLine, plotFrame, pathData, redrawer,
        widgetRoot} from './lib.js';

const SATURATED = 0.01;          // a derivative below 1% of its maximum: saturated (lesson 04)
const FUNCTIONS = {
  sigmoid: {label: 'sigmoid σ(x)', f: (x) => sigmoid(x), df: (x) => { const y = sigmoid(x); return y * (1 - y); },
            dmax: 0.25, ylim: [-0.15, 1.15], dlabel: "σ'(x) = σ(x)(1 − σ(x))"},
  tanh: {label: 'tanh(x)', f: (x) => Math.tanh(x), df: (x) => { const t = Math.tanh(x); return 1 - t * t; },
         dmax: 1, ylim: [-1.2, 1.2], dlabel: "tanh'(x) = 1 − tanh²(x)"},
  relu: {label: 'ReLU max(0, x)', f: (x) => (x > 0 ? x : 0), df: (x) => (x > 0 ? 1 : 0),
         dmax: 1, ylim: [-1.5, 8], dlabel: "ReLU'(x): 1 for x > 0, else 0"},
  leaky_relu: {label: 'leaky ReLU max(αx, x)', f: (x, a) => (x > 0 ? x : a * x), df: (x, a) => (x > 0 ? 1 : a),
               dmax: 1, ylim: [-2.5, 8], dlabel: "leaky ReLU'(x): 1 for x > 0, else α"},
};
const XLIM = [-8, 8];

function status(name, x, a) {
  const F = FUNCTIONS[name], r = F.df(x, a) / F.dmax;
  if (name === 'relu') return x > 0 ? ['active: the gradient is 1 (ReLU never saturates for x > 0)', 'good']
                                    : ['inactive: the gradient is 0, no error signal passes this unit', 'bad'];
  if (name === 'leaky_relu') return x > 0 ? ['active: the gradient is 1', 'good']
                                          : [`negative side: the gradient is α = ${fmt(a)}, small but never 0`, 'warn'];
  if (r < SATURATED) return [`saturated: the gradient is only ${pct(r)} of its maximum ${fmt(F.dmax)}; the weights before this unit barely learn`, 'bad'];
  if (r < 0.1) return [`close to saturation: the gradient is ${pct(r)} of its maximum`, 'warn'];
  return [`not saturated: the gradient is ${pct(r)} of its maximum ${fmt(F.dmax)}`, 'good'];
}

function render({ model, el }) {
  const root = widgetRoot(el, 'activation-explorer', 'Activation functions and their derivatives');
  const fn = selectControl({label: 'function', aria: 'activation function', value: model.get('activation'),
    options: model.get('functions').map((k) => [k, FUNCTIONS[k].label]),
    onChange: (v) => { model.set('activation', v); model.save_changes(); }});
  const xs = rangeControl({label: 'pre-activation x', aria: 'pre-activation value x', min: XLIM[0], max: XLIM[1],
    step: 0.01, value: model.get('x'), testid: 'x-value', format: (v) => fmt(v, 2),
    onInput: (v) => { model.set('x', v); model.save_changes(); }});
  const alpha = rangeControl({label: 'slope α for x < 0', aria: 'negative slope α of leaky ReLU', min: 0, max: 0.5,
    step: 0.01, value: model.get('negative_slope'), testid: 'alpha-value',
    onInput: (v) => { model.set('negative_slope', v); model.save_changes(); }});
  const value = readout('f(x) =', 'value'), grad = readout("f'(x) =", 'gradient');
  const ratio = readout("f'(x) / max f' =", 'gradient-ratio');
  const sat = statusLine('saturation');
  const plot = s('svg', {class: 'dlw-plot', viewBox: '0 0 760 245', width: 760, role: 'img',
                         'aria-label': 'the activation function and its derivative'});
  root.append(h('div', {class: 'dlw-controls'}, [fn.el, xs.el, alpha.el]),
              h('div', {class: 'dlw-readouts'}, [value.el, grad.el, ratio.el]), sat.el,
              h('figure', {class: 'dlw-figure'}, [plot, h('figcaption', {text: 'Red background: the derivative is below 1% '
                + 'of its maximum (saturated; for ReLU: no gradient at all). Dashed: the tangent at x, whose slope is f\'(x).'})]));

  const draw = () => {
    const name = model.get('activation'), x = model.get('x'), a = model.get('negative_slope'), F = FUNCTIONS[name];
    fn.set(name); xs.set(x); alpha.set(a);
    alpha.el.style.display = name === 'leaky_relu' ? '' : 'none';
    const fx = F.f(x, a), dx = F.df(x, a);
    value.set(fx); grad.set(dx); ratio.set(dx / F.dmax, pct(dx / F.dmax));
    const [text, kind] = status(name, x, a);
    sat.set(text, kind, kind === 'bad' && name !== 'leaky_relu');
    plot.replaceChildren();
    const grid = Array.from({length: 641}, (_, i) => XLIM[0] + (i * (XLIM[1] - XLIM[0])) / 640);
    const panels = [
      {x: 50, title: F.label, ylim: F.ylim, f: (t) => F.f(t, a), at: fx},
      {x: 440, title: F.dlabel, ylim: [-0.1 * F.dmax, 1.15 * F.dmax], f: (t) => F.df(t, a), at: dx},
    ];
    for (const [k, p] of panels.entries()) {
      const {X, Y, g} = plotFrame(plot, {x: p.x, y: 22, w: 300, h: 190, xlim: XLIM, ylim: p.ylim, xlabel: 'x', title: p.title});
      // shade where the derivative is below 1% of its maximum (saturated; for ReLU: no gradient at all)
      let start = null;
      for (const t of grid.concat([Infinity])) {
        const low = t !== Infinity && F.df(t, a) / F.dmax < SATURATED;
        if (low && start === null) start = t;
        if (!low && start !== null) {
          const end = Math.min(t, XLIM[1]);
          g.append(s('rect', {x: X(start), y: 22, width: X(end) - X(start), height: 190, fill: '#ffebe9'}));
          start = null;
        }
      }
      g.append(s('line', {x1: X(XLIM[0]), x2: X(XLIM[1]), y1: Y(0), y2: Y(0), stroke: '#afb8c1'}));
      g.append(s('path', {d: pathData(grid.map((t) => [X(t), Y(p.f(t))])), fill: 'none',
                          stroke: k ? '#bc4c00' : '#0969da', 'stroke-width': 2}));
      if (k === 0) {   // the tangent at x: its slope is f'(x)
        g.append(s('path', {d: pathData([-1.5, 1.5].map((d) => [X(x + d), Y(fx + d * dx)])), stroke: '#bc4c00',
                            'stroke-width': 1.5, 'stroke-dasharray': '5 3', fill: 'none'}));
      }
      g.append(s('line', {x1: X(x), x2: X(x), y1: 22, y2: 212, stroke: '#57606a', 'stroke-dasharray': '2 3'}));
      g.append(s('circle', {cx: X(x), cy: Y(p.at), r: 5, fill: k ? '#bc4c00' : '#0969da', stroke: '#fff'}));
    }
  };
  const redraw = redrawer(draw);
  for (const k of ['activation', 'x', 'negative_slope']) model.on(`change:${k}`, redraw);
  draw();
}

export default { render };
export { FUNCTIONS };   // for the tests, which run them in Node.js
