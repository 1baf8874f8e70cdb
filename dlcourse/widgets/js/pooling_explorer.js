// The pooling explorer's front end (dlcourse.widgets.PoolingExplorer): max, sum and average pooling with any window
// and stride, overlapping windows hatched.
import {uid, h, s, fmt, rangeControl, selectControl, readout, statusLine, MAGMA, ramp, redrawer, widgetRoot} from './lib.js';

function pool(x, F, S, mode) {                    // every F x F window with stride S (floored), no padding, as the package
  const H = x.length, W = x[0].length, OH = Math.floor((H - F) / S) + 1, OW = Math.floor((W - F) / S) + 1, out = [];
  for (let i = 0; i < OH; i++) {
    const row = [];
    for (let j = 0; j < OW; j++) {
      let m = -Infinity, sum = 0;
      for (let u = 0; u < F; u++) for (let v = 0; v < F; v++) { const a = x[i * S + u][j * S + v]; m = Math.max(m, a); sum += a; }
      row.push(mode === 'max' ? m : mode === 'sum' ? sum : sum * (1 / (F * F)));
    }
    out.push(row);
  }
  return out;
}
const MODES = {max: 'max', sum: 'sum', avg: 'average'};
function coverage(n, F, S) {                      // along one axis of length n: [windows, the most windows one index is in]
  const O = n >= F ? Math.floor((n - F) / S) + 1 : 0;
  let most = 0;
  for (let r = 0; r < n; r++) {
    let k = 0;
    for (let i = 0; i < O; i++) if (i * S <= r && r < i * S + F) k++;
    most = Math.max(most, k);
  }
  return [O, most];
}
const plural = (k, one, many) => `${k} ${k === 1 ? one : many}`;

function render({ model, el }) {
  const root = widgetRoot(el, 'pooling-explorer', 'Pooling: max, sum and average, window and stride, overlapping windows');
  const maps = model.get('maps');
  const save = (k, f = (v) => v) => (v) => { model.set(k, f(v)); model.set('window', 0); model.save_changes(); };
  const source = selectControl({label: 'input', aria: 'input activation map', value: model.get('map'),
    options: maps.map((m, k) => [k, m.name]), onChange: save('map', Number)});
  const mode = selectControl({label: 'pooling', aria: 'pooling function', value: model.get('mode'),
    options: Object.entries(MODES), onChange: save('mode')});
  const cF = rangeControl({label: 'window F', aria: 'window size F', min: 1, max: 6, step: 1, value: model.get('F'),
    testid: 'F-value', format: String, onInput: save('F')});
  const cS = rangeControl({label: 'stride S', aria: 'stride S', min: 1, max: 6, step: 1, value: model.get('S'),
    testid: 'S-value', format: String, onInput: save('S')});
  const win = rangeControl({label: 'window', aria: 'window shown (output position)', min: 0, max: 0, step: 1, value: 0,
    testid: 'window-value', format: (v) => String(v + 1), onInput: (v) => { model.set('window', v); model.save_changes(); }});
  const rSize = readout('output size', 'output-size'), rWin = readout('window', 'window-result');
  const overlap = statusLine('overlap'), fit = statusLine('fit');
  const inSvg = s('svg', {class: 'dlw-plot', role: 'img', 'aria-label': 'the input map with the window'});
  const outSvg = s('svg', {class: 'dlw-plot', role: 'img', 'aria-label': 'the pooled map'});
  const inCap = h('figcaption'), outCap = h('figcaption');
  const out = h('output', {'data-testid': 'output'}, [h('figure', {class: 'dlw-figure'}, [outSvg, outCap])]);
  root.append(h('div', {class: 'dlw-controls'}, [source.el, mode.el, cF.el, cS.el, win.el]),
              h('div', {class: 'dlw-readouts'}, [rSize.el, rWin.el]), fit.el, overlap.el,
              h('div', {class: 'dlw-row'}, [h('figure', {class: 'dlw-figure'}, [inSvg, inCap]), out]));

  const draw = () => {
    const k = model.get('map'), m = maps[k], x = m.values, F = model.get('F'), S = model.get('S'), md = model.get('mode');
    source.set(k); mode.set(md); cF.set(F); cS.set(S);
    const H = x.length, W = x[0].length;
    inSvg.replaceChildren(); outSvg.replaceChildren();
    inCap.textContent = `${m.name}: ${H} × ${W}`;
    const tooBig = F > Math.min(H, W), y = tooBig ? [] : pool(x, F, S, md), OH = y.length, OW = OH ? y[0].length : 0;
    const leftH = tooBig ? 0 : (H - F) % S, leftW = tooBig ? 0 : (W - F) % S;
    const c = Math.max(6, Math.min(40, Math.floor(330 / Math.max(H, W, F)))), oc = OH ? Math.max(6, Math.min(40, Math.floor(260 / Math.max(OH, OW)))) : 0;
    const inW = Math.max(W, F) * c, inH = Math.max(H, F) * c;
    inSvg.setAttribute('viewBox', `-2 -2 ${inW + 4} ${inH + 4}`); inSvg.setAttribute('width', inW + 4);
    outSvg.setAttribute('viewBox', `-2 -2 ${OW * oc + 4} ${OH * oc + 4}`); outSvg.setAttribute('width', OW * oc + 4);
    if (tooBig) {
      rSize.set(null, `(I − F)/S + 1 = (${H} − ${F})/${S} + 1 < 1: no output`); rWin.set(null, '-');
      fit.set(`Passt nicht! The window (F = ${F}) is larger than the map (${H} × ${W}): it fits nowhere.`, 'bad', false);
      overlap.set('No window, so nothing to pool and nothing overlaps.', 'bad', false);
      out.dataset.value = 'null'; outCap.textContent = 'no output';
    } else {
      out.dataset.value = JSON.stringify(y);
      outCap.textContent = `${MODES[md]} pooling ${F} × ${F}, stride ${S}: ${OH} × ${OW}`;
      rSize.set([OH, OW], `(I − F)/S + 1 = (${H} − ${F})/${S} + 1 = ${leftH ? `${fmt((H - F) / S + 1, 3)}, floored to ${OH}` : OH}`
                          + (H === W ? '' : ` × ${OW}`));
      if (leftH || leftW) {
        const lost = [leftH && plural(leftH, 'row', 'rows'), leftW && plural(leftW, 'column', 'columns')].filter(Boolean).join(' and ');
        fit.set(`Passt nicht! The stride S = ${S} does not divide I − F = ${H - F}${H === W ? '' : ` × ${W - F}`}: the last ${lost} `
                + `(red) are in no window; the output is floored to ${OH} × ${OW}.`, 'bad', false);
      } else fit.set(`Fits: the last window ends exactly at the edge of the map; the output is ${OH} × ${OW}.`, 'good', true);
      // how many windows one input value is in, at most: more than one only where two windows exist and share cells
      const [, rows] = coverage(H, F, S), [, cols] = coverage(W, F, S), most = rows * cols;
      if (most > 1) overlap.set(`Overlapping pooling: the stride S = ${S} is smaller than the window F = ${F}, so neighbouring windows share `
                                + `${F - S} ${F - S === 1 ? 'row/column' : 'rows/columns'} (hatched); an input value is in up to ${most} windows.`, 'warn', true);
      else if (S < F) overlap.set(`No overlap here: S = ${S} is smaller than F = ${F}, but only ${plural(OH * OW, 'window fits', 'windows fit')}, `
                                  + 'side by side, so no two windows share a value.', 'good', false);
      else if (S > F) overlap.set(`The stride S = ${S} is larger than the window F = ${F}: ${S - F} of every ${S} rows and columns are never pooled.`, 'warn', false);
      else overlap.set('No overlap: every pooled input value is in exactly one window.', 'good', false);
    }

    // the input map and the output, with numbers in the cells when they are large enough to read
    const range = (rows) => { let a = Infinity, b = -Infinity; for (const row of rows) for (const v of row) { a = Math.min(a, v); b = Math.max(b, v); } return [a, b]; };
    const [lo, hi] = range(x), [olo, ohi] = OH ? range(y) : [0, 0];
    const shade = (v, a, b) => { const [r, g, bl] = ramp(MAGMA, b > a ? 0.15 + (0.85 * (v - a)) / (b - a) : 0.6); return `rgb(${r},${g},${bl})`; };
    const numbers = c >= 22, hatch = uid('hatch');
    inSvg.append(s('defs', {}, [s('pattern', {id: hatch, width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)'},
                                 [s('line', {x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#bf8700', 'stroke-width': 3})])]));
    for (let r = 0; r < H; r++) for (let q = 0; q < W; q++) {
      const unpooled = r >= H - leftH || q >= W - leftW;
      inSvg.append(s('rect', {x: q * c, y: r * c, width: c, height: c, fill: numbers ? '#fff' : shade(x[r][q], lo, hi),
                              stroke: unpooled ? '#cf222e' : numbers ? '#d0d7de' : 'none', 'stroke-width': unpooled ? 1.5 : 0.5}));
      if (numbers) inSvg.append(s('text', {x: q * c + c / 2, y: r * c + c / 2 + 4, 'text-anchor': 'middle', style: 'font-size:13px', text: fmt(x[r][q], 2)}));
    }
    if (tooBig) {                 // the window that fits nowhere, over the map it does not fit
      inSvg.append(s('rect', {x: 0, y: 0, width: F * c, height: F * c, fill: 'none', stroke: '#cf222e', 'stroke-width': 3, 'stroke-dasharray': '6 4'}));
      win.input.max = 0; win.set(0);
      return;
    }
    const w = Math.min(model.get('window'), OH * OW - 1), i = Math.floor(w / OW), j = w % OW;
    win.input.max = OH * OW - 1; win.set(w);
    rWin.set(y[i][j], `${MODES[md]} of window (${i + 1}, ${j + 1}) = ${fmt(y[i][j])}`);
    if (j + 1 < OW) {             // the right neighbour, and the cells the two windows share
      inSvg.append(s('rect', {x: (j + 1) * S * c, y: i * S * c, width: F * c, height: F * c, fill: 'none', stroke: '#bf8700', 'stroke-width': 2, 'stroke-dasharray': '4 3'}));
      if (S < F) inSvg.append(s('rect', {x: (j + 1) * S * c, y: i * S * c, width: (F - S) * c, height: F * c, fill: `url(#${hatch})`, opacity: 0.5}));
    }
    inSvg.append(s('rect', {x: j * S * c, y: i * S * c, width: F * c, height: F * c, fill: 'rgba(9,105,218,0.12)', stroke: '#0969da', 'stroke-width': 3}));
    const onumbers = oc >= 22;
    for (let r = 0; r < OH; r++) for (let q = 0; q < OW; q++) {
      const on = r === i && q === j;
      outSvg.append(s('rect', {x: q * oc, y: r * oc, width: oc, height: oc, fill: onumbers ? (on ? '#ddf4ff' : '#fff') : shade(y[r][q], olo, ohi),
                               stroke: on ? '#0969da' : onumbers ? '#d0d7de' : 'none', 'stroke-width': on ? 3 : 0.5}));
      if (onumbers) outSvg.append(s('text', {x: q * oc + oc / 2, y: r * oc + oc / 2 + 4, 'text-anchor': 'middle', style: 'font-size:13px', text: fmt(y[r][q], 3)}));
    }
  };
  const redraw = redrawer(draw);
  for (const key of ['map', 'mode', 'F', 'S', 'window']) model.on(`change:${key}`, redraw);
  draw();
}

export default { render };
export { pool };   // for the tests, which run them in Node.js
