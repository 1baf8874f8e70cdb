// The drawing and DOM library that every widget's front end imports: elements, labelled controls, read-outs, SVG plots,
// heat maps. esbuild bundles it into each widget's module (anywidget loads a widget's front end as one module).

const SVG_NS = 'http://www.w3.org/2000/svg';
let uidCount = 0;
export const uid = (prefix) => `dlw-${prefix}-${++uidCount}-${Math.random().toString(36).slice(2, 8)}`;

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  return node;
}
export function h(tag, attrs = {}, children = []) {        // an HTML element
  const node = setAttrs(document.createElement(tag), attrs);
  for (const c of [].concat(children)) if (c !== null && c !== undefined) node.append(c);
  return node;
}
export function s(tag, attrs = {}, children = []) {        // an SVG element
  const node = setAttrs(document.createElementNS(SVG_NS, tag), attrs);
  for (const c of [].concat(children)) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function fmt(v, digits = 4) {                        // a number for people: 0.5, 0.25, 1.23e-5
  if (typeof v !== 'number') return String(v);
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '-∞';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(Math.max(digits - 2, 1));
  return String(parseFloat(v.toFixed(digits)));
}
export const pct = (r) => (100 * r < 0.1 && r > 0 ? (100 * r).toExponential(1) : fmt(100 * r, 1)) + '%';
// A probability as people read it: 84.9%, 0.3%, and "< 0.1%" for the tiny ones (never an exponent before a % sign)
export const probText = (p) => (p > 0 && 100 * p < 0.05 ? '< 0.1%' : `${fmt(100 * p, 1)}%`);
// A value that may grow large (weights, losses): 4 significant digits, the exponent from 10⁴ on or below 10⁻³, so that
// numbers side by side have one format (-7.169e+4 beside 5.450e+5, not -71694.5118 beside 5.45e+5)
export function sig(v) {
  if (typeof v !== 'number' || !Number.isFinite(v) || v === 0) return fmt(v);
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(3) : String(parseFloat(v.toPrecision(4)));
}
// "a shirt", "an ankle boot": the indefinite article of an English noun (by its first letter)
export const withArticle = (noun) => `${/^[aeiou]/i.test(noun) ? 'an' : 'a'} ${noun}`;

// The logistic function without overflow: exp of a non-positive number only (as dlcourse.activations.sigmoid)
export function sigmoid(x) { const e = Math.exp(-Math.abs(x)); return x >= 0 ? 1 / (1 + e) : e / (1 + e); }

// Labelled controls: a visible label, an aria-label naming what the control sets, the current value beside it
function labelled(text, input, extra = null) {
  return h('label', {class: 'dlw-control'}, [h('span', {class: 'dlw-label', text}), input, extra]);
}
function valueOutput(testid) { return h('output', {class: 'dlw-control-value', 'data-testid': testid}); }
function showValue(out, v, format) { out.textContent = format(v); out.dataset.value = JSON.stringify(v); }

export function rangeControl({label, aria, min, max, step, value, testid, format = fmt, onInput}) {
  const input = h('input', {type: 'range', min, max, step, value, 'aria-label': aria || label});
  const out = valueOutput(testid);
  input.addEventListener('input', () => { showValue(out, +input.value, format); onInput(+input.value); });
  showValue(out, +value, format);
  return {el: labelled(label, input, out), input, set(v) { input.value = v; showValue(out, +input.value, format); }};
}
export function choiceControl({label, aria, values, value, testid, format = fmt, onInput}) {
  // a slider over a list of good values (learning rates, batch sizes); it shows the value, not its index
  const nearest = (v) => values.reduce((best, c, i) => (Math.abs(c - v) < Math.abs(values[best] - v) ? i : best), 0);
  const input = h('input', {type: 'range', min: 0, max: values.length - 1, step: 1, value: nearest(value),
                            'aria-label': aria || label});
  const out = valueOutput(testid);
  const show = () => { const v = values[+input.value]; showValue(out, v, format); input.setAttribute('aria-valuetext', format(v)); return v; };
  input.addEventListener('input', () => onInput(show()));
  show();
  return {el: labelled(label, input, out), input, set(v) { input.value = nearest(v); show(); }};
}
export function numberControl({label, aria, min, max, value, onInput}) {
  // a whole number from min to max; a value outside (empty, -3, 1e9, 2.5) is refused out loud, never silently: the box
  // is marked invalid with a message saying what the widget still shows, and leaving the box puts that value back
  const input = h('input', {type: 'number', min, max, step: 1, value, inputmode: 'numeric', 'aria-label': aria || label});
  const msg = h('span', {class: 'dlw-error', id: uid('msg'), 'aria-live': 'polite'});
  input.setAttribute('aria-describedby', msg.id);
  let shown = value;
  const parse = () => { const v = Number(input.value); return input.value.trim() !== '' && Number.isInteger(v) && v >= min && v <= max ? v : null; };
  const mark = (bad, text) => { input.classList.toggle('dlw-invalid', bad); input.setAttribute('aria-invalid', String(bad)); msg.textContent = text; };
  input.addEventListener('input', () => {
    const v = parse();
    if (v === null) return mark(true, `${label} must be a whole number from ${min} to ${max}: still showing ${shown}`);
    mark(false, ''); shown = v; onInput(v);
  });
  input.addEventListener('change', () => {
    if (parse() === null) { input.value = shown; mark(false, `not a valid ${label}: back to ${shown}`); }
  });
  return {el: labelled(label, input, msg), input, msg,
          set(v) { shown = v; if (parse() !== v) input.value = v; if (input.getAttribute('aria-invalid') === 'true') mark(false, ''); }};
}
export function rangeNumberControl({label, aria, min, max, sliderMax = max, value, testid, onInput}) {
  // a slider for the usual values and a number box for all of them (the slider stops at sliderMax, the box at max)
  const slider = h('input', {type: 'range', min, max: sliderMax, step: 1, value: Math.min(value, sliderMax), 'aria-label': aria || label});
  const box = numberControl({label, aria: `${aria || label}, typed (${min} to ${max})`, min, max, value, onInput});
  const out = valueOutput(testid);
  const show = (v) => { showValue(out, v, String); slider.value = Math.min(v, sliderMax); };
  slider.addEventListener('input', () => { box.set(+slider.value); show(+slider.value); onInput(+slider.value); });
  show(value);
  return {el: h('label', {class: 'dlw-control'}, [h('span', {class: 'dlw-label', text: label}), slider, box.input, out, box.msg]),
          input: slider, box: box.input, set(v) { box.set(v); show(v); }};
}
export function selectControl({label, aria, options, value, onChange}) {
  const input = h('select', {'aria-label': aria || label});
  for (const [v, text] of options) input.append(h('option', {value: v, text}));
  input.value = String(value);
  input.addEventListener('change', () => onChange(input.value));
  return {el: labelled(label, input), input, set(v) { input.value = String(v); }};
}
export function button(text, aria, onClick) {
  return h('button', {type: 'button', class: 'dlw-button', 'aria-label': aria, text, onclick: onClick});
}
export function readout(label, testid) {        // a computed value: visible text, full precision in data-value
  const out = h('output', {class: 'dlw-value', 'data-testid': testid});
  return {el: h('span', {class: 'dlw-readout'}, [h('span', {class: 'dlw-readout-label', text: label}), out]), out,
          set(value, text) { out.textContent = text ?? fmt(value); out.dataset.value = JSON.stringify(value); }};
}
export function statusLine(testid) {
  const out = h('output', {class: 'dlw-status', 'data-testid': testid, 'aria-live': 'polite'});
  return {el: out, set(text, kind, value) {
    out.textContent = text; out.className = `dlw-status dlw-${kind}`; out.dataset.value = JSON.stringify(value ?? text);
  }};
}

// Plots: an SVG frame with ticks; X and Y map data to pixels; draw into `g` (clipped to the frame)
function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}
function logTicks(lo, hi) {                     // powers of ten (every k-th over a long range); 2 and 5 times them over a short one
  const ticks = [], decades = Math.log10(hi / lo), mults = decades < 2.5 ? [1, 2, 5] : [1], every = Math.ceil(decades / 7);
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    if (e % every) continue;
    for (const m of mults) { const v = +(m * 10 ** e).toPrecision(6); if (v >= lo && v <= hi) ticks.push(v); }
  }
  return ticks.length ? ticks : [lo, hi];
}
const tickText = (v) => (v !== 0 && (Math.abs(v) >= 1e4 || Math.abs(v) < 1e-2) ? `1e${Math.round(Math.log10(Math.abs(v)))}`.replace('1e', v < 0 ? '-1e' : '1e') : fmt(v, 3));
export function plotFrame(svgRoot, {x, y, w, h: ht, xlim, ylim, logy = false, xlabel = '', ylabel = '', title = ''}) {
  const ly = (v) => (logy ? Math.log10(v) : v);
  const [ya, yb] = [ly(ylim[0]), ly(ylim[1])];
  const X = (v) => x + ((v - xlim[0]) / (xlim[1] - xlim[0])) * w;
  const Y = (v) => y + ht - ((ly(v) - ya) / (yb - ya)) * ht;
  const axes = s('g', {class: 'dlw-axes'});
  const clip = uid('clip');
  axes.append(s('clipPath', {id: clip}, [s('rect', {x, y, width: w, height: ht})]));
  for (const t of niceTicks(xlim[0], xlim[1])) {
    axes.append(s('line', {x1: X(t), x2: X(t), y1: y + ht, y2: y + ht + 4}));
    axes.append(s('text', {x: X(t), y: y + ht + 14, 'text-anchor': 'middle', text: fmt(t, 3)}));
  }
  for (const t of logy ? logTicks(ylim[0], ylim[1]) : niceTicks(ylim[0], ylim[1], 4)) {
    axes.append(s('line', {class: 'dlw-grid-line', x1: x, x2: x + w, y1: Y(t), y2: Y(t)}));
    axes.append(s('line', {x1: x - 4, x2: x, y1: Y(t), y2: Y(t)}));
    axes.append(s('text', {x: x - 6, y: Y(t) + 3, 'text-anchor': 'end', text: logy ? tickText(t) : fmt(t, 3)}));
  }
  axes.append(s('rect', {class: 'dlw-frame', x, y, width: w, height: ht}));
  if (xlabel) axes.append(s('text', {class: 'dlw-axis-label', x: x + w / 2, y: y + ht + 30, 'text-anchor': 'middle', text: xlabel}));
  if (ylabel) axes.append(s('text', {class: 'dlw-axis-label', x: x - 40, y: y + ht / 2, 'text-anchor': 'middle',
                                     transform: `rotate(-90 ${x - 40} ${y + ht / 2})`, text: ylabel}));
  if (title) axes.append(s('text', {class: 'dlw-plot-title', x: x + w / 2, y: y - 6, 'text-anchor': 'middle', text: title}));
  svgRoot.append(axes);
  const g = s('g', {'clip-path': `url(#${clip})`});
  svgRoot.append(g);
  return {X, Y, g};
}
export function pathData(points) {              // an SVG path through [x, y] pixel points, broken at non-finite ones
  let d = '', pen = false;
  for (const [px, py] of points) {
    if (!Number.isFinite(px) || !Number.isFinite(py)) { pen = false; continue; }
    const cx = Math.max(-1e4, Math.min(1e4, px)), cy = Math.max(-1e4, Math.min(1e4, py));
    d += `${pen ? 'L' : 'M'}${cx.toFixed(1)} ${cy.toFixed(1)} `;
    pen = true;
  }
  return d;
}

// Images and activation maps on a canvas, one canvas pixel per value, scaled up without smoothing
export const MAGMA = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];
export const DIVERGING = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]];
export function ramp(stops, t) {
  t = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(Math.floor(t), stops.length - 2), f = t - i;
  return stops[i].map((c, k) => c + f * (stops[i + 1][k] - c));
}
const COLORMAPS = {gray: (t) => [255 * t, 255 * t, 255 * t], magma: (t) => ramp(MAGMA, t), diverging: (t) => ramp(DIVERGING, t)};
export function heatmap(rows, {vmin, vmax, cmap = 'magma', width = 140, label = 'map', testid = null}) {
  const H = rows.length, W = H ? rows[0].length : 0;
  const c = h('canvas', {width: Math.max(W, 1), height: Math.max(H, 1), class: 'dlw-heat', role: 'img', 'aria-label': label,
                         'data-testid': testid});
  const ctx = c.getContext('2d'), img = ctx.createImageData(Math.max(W, 1), Math.max(H, 1));
  const span = vmax - vmin || 1, color = COLORMAPS[cmap];
  for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) {
    const [r, g, b] = color((rows[i][j] - vmin) / span), k = 4 * (i * W + j);
    img.data[k] = r; img.data[k + 1] = g; img.data[k + 2] = b; img.data[k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  c.style.width = `${width}px`; c.style.height = `${(width * Math.max(H, 1)) / Math.max(W, 1)}px`;
  if (testid) c.dataset.value = JSON.stringify(rows);
  return c;
}
export function onCell(canvas, rows, callback) {
  // callback(i, j) for the value at row i, column j: under the mouse or a finger, or moved to with the arrow keys (the
  // map takes the keyboard focus; Home goes back to [0, 0]), so that no value is reachable by hovering only
  const H = rows.length, W = rows[0].length, cur = [0, 0];
  const pick = (i, j) => { cur[0] = Math.min(H - 1, Math.max(0, i)); cur[1] = Math.min(W - 1, Math.max(0, j)); callback(cur[0], cur[1]); };
  const fromPointer = (e) => {
    const r = canvas.getBoundingClientRect();
    const i = Math.floor(((e.clientY - r.top) / r.height) * H), j = Math.floor(((e.clientX - r.left) / r.width) * W);
    if (i >= 0 && j >= 0 && i < H && j < W) pick(i, j);
  };
  canvas.addEventListener('pointermove', fromPointer);
  canvas.addEventListener('pointerdown', fromPointer);
  canvas.tabIndex = 0;
  canvas.setAttribute('aria-label', `${canvas.getAttribute('aria-label')} (${H} × ${W}): arrow keys read its values`);
  canvas.addEventListener('keydown', (e) => {
    const step = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]}[e.key];
    if (e.key === 'Home') { e.preventDefault(); pick(0, 0); } else if (step) { e.preventDefault(); pick(cur[0] + step[0], cur[1] + step[1]); }
  });
}
export function symmetricRange(rows) {
  let m = 0;
  for (const row of rows) for (const v of row) m = Math.max(m, Math.abs(v));
  return m || 1;
}
export function bytesFromBase64(text) {
  const bin = atob(text), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
export function redrawer(draw) {                // coalesce many trait changes into one redraw, after the current task
  let pending = false;
  return () => { if (!pending) { pending = true; queueMicrotask(() => { pending = false; draw(); }); } };
}
export function widgetRoot(el, kind, title) {
  const root = h('div', {class: 'dlw-root', 'data-dlw': kind});
  if (title) root.append(h('div', {class: 'dlw-title', text: title}));
  el.append(root);
  return root;
}
