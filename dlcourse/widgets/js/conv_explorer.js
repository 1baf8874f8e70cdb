// The convolution explorer's front end (dlcourse.widgets.ConvExplorer): the output size (I - F + 2P)/S + 1 on a drawn
// grid, and a filter applied to a real image.
import {h, s, fmt, rangeControl, rangeNumberControl, selectControl, button, readout, statusLine, heatmap, onCell,
        symmetricRange, bytesFromBase64, redrawer, widgetRoot} from './lib.js';

const MAX_I = 256;              // the input size goes to 256 (AlexNet's 227 among them); its slider stops at 64
// The lecture's cases, one click each: [button text, what it sets, I, F, S, P]
const EXAMPLES = [['7, 3, 3, 0', "the lecture's Passt nicht! example", 7, 3, 3, 0],
                  ['32, 5, 1, 0', "the lecture's 32 × 32 image and 5 × 5 filter", 32, 5, 1, 0],
                  ['AlexNet 227, 11, 4, 0', "AlexNet's first layer", 227, 11, 4, 0]];

function geometry(I, F, S, P) {                  // the lecture's formula, and what is left over when it does not fit
  const n = I + 2 * P, span = I - F + 2 * P;
  if (span < 0) return {n, span, tooBig: true, fits: false, O: 0};
  const O = Math.floor(span / S) + 1;
  return {n, span, tooBig: false, fits: span % S === 0, O, reach: (O - 1) * S + F, left: span % S};
}
function convolve(x, w, S, P) {                  // one map: sum over the window of w * (zero-padded) x, as conv2d
  const H = x.length, W = x[0].length, F = w.length, Fw = w[0].length;
  const OH = Math.floor((H - F + 2 * P) / S) + 1, OW = Math.floor((W - Fw + 2 * P) / S) + 1, out = [];
  for (let i = 0; i < OH; i++) {
    const row = [];
    for (let j = 0; j < OW; j++) {
      let sum = 0;
      for (let u = 0; u < F; u++) {
        const r = i * S + u - P;
        if (r < 0 || r >= H) continue;
        for (let v = 0; v < Fw; v++) { const c = j * S + v - P; if (c >= 0 && c < W) sum += w[u][v] * x[r][c]; }
      }
      row.push(sum);
    }
    out.push(row);
  }
  return out;
}

function render({ model, el }) {
  const root = widgetRoot(el, 'conv-explorer', 'Convolution: output size, stride and padding, and a filter on a real image');
  const mean = model.get('mean'), std = model.get('std'), filters = model.get('filters');
  const images = model.get('images').map((im) => {           // uint8 pixels -> the normalised input, in float64
    const px = bytesFromBase64(im.pixels), [H, W] = im.shape;
    return {label: im.label, x: Array.from({length: H}, (_, i) => Array.from({length: W}, (_, j) => (px[i * W + j] / 255 - mean) / std))};
  });
  const change = (k) => (v) => { model.set(k, v); model.set('position', 0); model.save_changes(); };
  const size = (label, aria, k, min, max) => rangeControl({label, aria, min, max, step: 1, value: model.get(k),
                                                            testid: `${k}-value`, format: String, onInput: change(k)});
  const cI = rangeNumberControl({label: 'input size I', aria: 'input size I', min: 1, max: MAX_I, sliderMax: 64,
                                 value: model.get('I'), testid: 'I-value', onInput: change('I')});
  const cF = size('filter size F', 'filter size F', 'F', 1, 15);
  const cS = size('stride S', 'stride S', 'S', 1, 8), cP = size('zero padding P', 'zero padding P', 'P', 0, 8);
  const pos = rangeControl({label: 'filter position', aria: 'filter position (which output pixel)', min: 0, max: 0, step: 1,
    value: 0, testid: 'position-value', format: (v) => String(v + 1),
    onInput: (v) => { model.set('position', v); model.save_changes(); }});
  let timer = null;
  const PLAY = 'play: step the filter over the input', PAUSE = 'pause: stop stepping the filter';
  const stop = () => { if (timer !== null) clearInterval(timer); timer = null; play.textContent = 'play'; play.setAttribute('aria-label', PLAY); };
  const play = button('play', PLAY, () => {
    if (timer !== null) return stop();
    play.textContent = 'pause'; play.setAttribute('aria-label', PAUSE);
    timer = setInterval(() => {
      if (!root.isConnected) return stop();
      const g = geometry(model.get('I'), model.get('F'), model.get('S'), model.get('P'));
      if (g.O > 0) { model.set('position', (model.get('position') + 1) % (g.O * g.O)); model.save_changes(); }
    }, 300);
  });
  const rO = readout('output size', 'output-size'), fit = statusLine('fit');
  const grid = s('svg', {class: 'dlw-plot', role: 'img', 'aria-label': 'the zero-padded input with the filter, and the output'});

  const image = selectControl({label: 'image', aria: 'Fashion-MNIST image', value: model.get('image'),
    options: images.map((im, k) => [k, `${k + 1}: ${im.label}`]),
    onChange: (v) => { model.set('image', +v); model.save_changes(); }});
  const filter = selectControl({label: 'filter', aria: 'filter applied to the image', value: model.get('filter'),
    options: Object.keys(filters).map((k) => [k, k]), onChange: (v) => { model.set('filter', v); model.save_changes(); }});
  const rMap = readout('activation map', 'map-size'), rVal = readout('value', 'map-value');
  const pictures = h('div', {class: 'dlw-row'});
  const examples = h('div', {class: 'dlw-controls'}, [h('span', {class: 'dlw-label', text: 'examples (I, F, S, P):'}),
    ...EXAMPLES.map(([text, what, I, F, S, P]) => button(text, `${text}: ${what}, I = ${I}, F = ${F}, S = ${S}, P = ${P}`, () => {   // the name starts with the text shown
      for (const [k, v] of Object.entries({I, F, S, P})) model.set(k, v);
      model.set('position', 0); model.save_changes();
    }))]);
  root.append(h('div', {class: 'dlw-controls'}, [cI.el, cF.el, cS.el, cP.el]), examples, h('div', {class: 'dlw-readouts'}, [rO.el]), fit.el,
              h('div', {class: 'dlw-controls'}, [pos.el, play]), grid,
              h('div', {class: 'dlw-title', style: 'margin-top:12px', text: 'The filter on a Fashion-MNIST image (I = 28; S and P as above)'}),
              h('div', {class: 'dlw-controls'}, [image.el, filter.el]), h('div', {class: 'dlw-readouts'}, [rMap.el, rVal.el]), pictures);

  const drawGrid = (I, F, S, P, g, position) => {
    // one cell per input pixel while they are large enough to see (n ≤ 48), else the areas as whole rectangles; the
    // drawing is as large as whatever it shows, the filter where it fits nowhere and the position that does not fit
    const n = g.n, c = Math.min(24, 300 / Math.max(n, F));
    const cells = n <= 48, gap = 60, top = 18, O = g.O;
    const ghost = !g.tooBig && !g.fits ? O * S + F : 0;                           // the next position, which does not fit
    const inW = Math.max(n, F, ghost) * c, oc = O > 0 ? Math.max(2, Math.min(c, 220 / O)) : 0;
    const width = inW + gap + Math.max(O * oc, 120) + 4, height = top + Math.max(Math.max(n, F) * c, O * oc) + 4;
    grid.replaceChildren();
    grid.setAttribute('viewBox', `0 0 ${width} ${height}`); grid.setAttribute('width', Math.round(width));
    grid.append(s('text', {x: 0, y: 11, text: `padded input ${n} × ${n}`}));
    const cell = (x, y, w, ht, fill) => grid.append(s('rect', {x, y, width: w, height: ht, stroke: '#d0d7de', 'stroke-width': 0.5, fill}));
    if (cells) {
      for (let r = 0; r < n; r++) for (let q = 0; q < n; q++) {
        const pad = r < P || q < P || r >= P + I || q >= P + I, unreached = !g.tooBig && (r >= g.reach || q >= g.reach);
        cell(q * c, top + r * c, c, c, unreached ? '#ffcecb' : pad ? '#eaeef2' : '#ffffff');
        if (pad && c >= 14) grid.append(s('text', {x: q * c + c / 2, y: top + r * c + c / 2 + 3, 'text-anchor': 'middle', text: '0'}));
      }
    } else {
      cell(0, top, n * c, n * c, '#eaeef2');                                       // the zero ring, then the image on it
      cell(P * c, top + P * c, I * c, I * c, '#ffffff');
      if (!g.tooBig && g.reach < n) {                                              // rows and columns no position reaches
        cell(g.reach * c, top, (n - g.reach) * c, n * c, '#ffcecb');
        cell(0, top + g.reach * c, n * c, (n - g.reach) * c, '#ffcecb');
      }
    }
    if (g.tooBig) {
      grid.append(s('rect', {x: 0, y: top, width: F * c, height: F * c, fill: 'none', stroke: '#cf222e', 'stroke-width': 2.5, 'stroke-dasharray': '5 3'}));
      grid.append(s('text', {x: F * c + 6, y: top + 12, text: `filter ${F} × ${F}`}));
      return;
    }
    const i = Math.floor(position / O), j = position % O;
    grid.append(s('rect', {x: j * S * c, y: top + i * S * c, width: F * c, height: F * c, fill: 'rgba(9,105,218,0.18)',
                           stroke: '#0969da', 'stroke-width': 2.5}));
    if (!g.fits && j === O - 1) {  // where the next position would be: it does not fit
      grid.append(s('rect', {x: O * S * c, y: top + i * S * c, width: F * c, height: F * c, fill: 'none', stroke: '#cf222e',
                             'stroke-width': 2.5, 'stroke-dasharray': '5 3'}));
    }
    const ox = inW + gap;
    grid.append(s('text', {x: ox, y: 11, text: `output ${O} × ${O}`}));
    grid.append(s('text', {x: inW + gap / 2, y: top + 24, 'text-anchor': 'middle', style: 'font-size:20px', text: '→'}));
    if (O <= 48) {
      for (let r = 0; r < O; r++) for (let q = 0; q < O; q++) {
        grid.append(s('rect', {x: ox + q * oc, y: top + r * oc, width: oc, height: oc, stroke: '#d0d7de', 'stroke-width': 0.5,
                               fill: r === i && q === j ? '#0969da' : '#ffffff'}));
      }
    } else {
      grid.append(s('rect', {x: ox, y: top, width: O * oc, height: O * oc, stroke: '#d0d7de', 'stroke-width': 0.5, fill: '#ffffff'}));
      grid.append(s('rect', {x: ox + j * oc, y: top + i * oc, width: oc, height: oc, fill: '#0969da'}));
    }
  };

  const draw = () => {
    const I = model.get('I'), F = model.get('F'), S = model.get('S'), P = model.get('P');
    cI.set(I); cF.set(F); cS.set(S); cP.set(P);
    const g = geometry(I, F, S, P), arith = `(I − F + 2P)/S + 1 = (${I} − ${F} + 2·${P})/${S} + 1`;
    const position = Math.min(model.get('position'), Math.max(g.O * g.O - 1, 0));
    pos.input.max = Math.max(g.O * g.O - 1, 0); pos.set(position);
    if (g.tooBig) {
      rO.set(null, `${arith} = ${g.span}/${S} + 1 < 1: no output`);
      fit.set(`Passt nicht! The filter (F = ${F}) is larger than the padded input (I + 2P = ${g.n}): it fits nowhere.`, 'bad', false);
    } else if (g.fits) {
      rO.set(g.O, `${arith} = ${g.O}`);
      fit.set(`Fits: the last of the ${g.O} positions per row ends exactly at the edge of the padded input; the output is ${g.O} × ${g.O}.`, 'good', true);
    } else {
      rO.set(g.span / S + 1, `${arith} = ${g.span}/${S} + 1 = ${fmt(g.span / S + 1, 2)}`);
      fit.set(`Passt nicht! The stride S = ${S} does not divide I − F + 2P = ${g.span}: after ${g.O} `
              + `${g.O === 1 ? 'position' : 'positions'} ${g.left} `
              + `${g.left === 1 ? 'column is' : 'columns are'} left over, too few for another one. Change S or P `
              + `(a layer would floor the size to ${g.O}).`, 'bad', false);
    }
    drawGrid(I, F, S, P, g, position);

    // the filter on the image, with stride S and padding P (floored, as conv2d)
    const k = Math.min(model.get('image'), images.length - 1), name = model.get('filter'), w = filters[name];
    image.set(k); filter.set(name);
    const x = images[k].x, Hx = x.length, Fw = w.length, spanx = Hx - Fw + 2 * P;
    pictures.replaceChildren();
    if (spanx < 0) { rMap.set(null, 'the filter is larger than the padded image'); return; }
    const map = convolve(x, w, S, P), Om = map.length;
    rMap.set(Om, `(${Hx} − ${Fw} + 2·${P})/${S} + 1 = ${spanx % S ? `${fmt(spanx / S + 1, 3)}, floored to ${Om}` : Om}: ${Om} × ${Om}`);
    const padded = Array.from({length: Hx + 2 * P}, (_, r) => Array.from({length: x[0].length + 2 * P},
      (_, q) => (r < P || q < P || r >= P + Hx || q >= P + x[0].length ? 0 : x[r - P][q - P])));
    let lo = 0, hi = 0;
    for (const row of padded) for (const v of row) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const mw = symmetricRange(w), mm = symmetricRange(map);
    const heat = heatmap(map, {vmin: -mm, vmax: mm, cmap: 'diverging', width: 196, label: 'the activation map', testid: 'activation-map'});
    onCell(heat, map, (i, j) => rVal.set(map[i][j], `map[${i}, ${j}] = ${fmt(map[i][j])}`));
    const fig = (node, caption) => h('figure', {class: 'dlw-figure'}, [node, h('figcaption', {text: caption})]);
    pictures.append(
      fig(heatmap(padded, {vmin: lo, vmax: hi, cmap: 'gray', width: 196, label: 'the zero-padded input image'}), `input ${Hx} × ${Hx}, padded by ${P}`),
      fig(heatmap(w, {vmin: -mw, vmax: mw, cmap: 'diverging', width: 98, label: `the filter ${name}`}), `filter ${Fw} × ${Fw} (red +, blue −)`),
      fig(heat, `activation map ${Om} × ${Om} (red +, blue −)`));
    rVal.set(map[0][0], `map[0, 0] = ${fmt(map[0][0])} (point at the map, or focus it and use the arrow keys, for others)`);
  };
  const redraw = redrawer(draw);
  for (const key of ['I', 'F', 'S', 'P', 'position', 'image', 'filter']) model.on(`change:${key}`, redraw);
  draw();
  return stop;
}

export default { render };
export { geometry, convolve };   // for the tests, which run them in Node.js
