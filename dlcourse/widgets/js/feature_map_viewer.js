// The feature-map viewer's front end (dlcourse.widgets.FeatureMapViewer): the maps and class probabilities that
// Python computed with the network, decoded from the widget's state.
import {h, fmt, probText, withArticle, rangeControl, selectControl, button, readout, heatmap, onCell, symmetricRange, bytesFromBase64,
        redrawer, widgetRoot} from './lib.js';

function render({ model, el }) {
  const root = widgetRoot(el, 'feature-map-viewer', 'Inside the pretrained LeNet-5: feature maps and class probabilities');
  const layers = model.get('layers'), classes = model.get('classes'), images = model.get('images');
  const offsets = [];
  layers.reduce((o, l) => { offsets.push(o); return o + l.C * l.H * l.W; }, 0);
  const cache = new Map();
  function maps(k, l) {           // the decoded maps of layer l for image k: [channel][row][col]
    const key = `${k}/${l}`;
    if (!cache.has(key)) {
      const bytes = bytesFromBase64(images[k].maps), {C, H, W} = layers[l];
      cache.set(key, Array.from({length: C}, (_, c) => {
        const [lo, hi] = images[k].ranges[l][c], base = offsets[l] + c * H * W;
        return Array.from({length: H}, (_, i) => Array.from({length: W}, (_, j) => lo + (bytes[base + i * W + j] / 255) * (hi - lo)));
      }));
    }
    return cache.get(key);
  }
  const save = (k, f) => (v) => { model.set(k, f(v)); if (k !== 'channel') model.set('channel', 0); model.save_changes(); };
  const image = selectControl({label: 'image', aria: 'input image', value: model.get('image'),
    options: images.map((im, k) => [k, `${k + 1}: ${im.label.toLowerCase()}`]), onChange: save('image', Number)});
  const layer = selectControl({label: 'layer', aria: 'layer whose feature maps are shown', value: model.get('layer'),
    options: layers.map((l, k) => [k, `${l.label}: ${l.C} maps ${l.H} × ${l.W}`]), onChange: save('layer', Number)});
  const channel = rangeControl({label: 'channel', aria: 'channel (feature map) shown large', min: 0, max: 0, step: 1, value: 0,
    testid: 'channel-value', format: (v) => String(v + 1), onInput: (v) => { model.set('channel', v); model.save_changes(); }});
  const rPred = readout('predicted:', 'prediction'), rTrue = readout('true class:', 'true-class'), rVal = readout('value', 'map-value');
  const pics = h('div', {class: 'dlw-row'}), thumbs = h('div', {class: 'dlw-row', style: 'gap:6px'});
  const bars = h('div', {'data-testid': 'probabilities', role: 'img', 'aria-label': 'the predicted class probabilities'});
  root.append(h('div', {class: 'dlw-controls'}, [image.el, layer.el, channel.el]),
              h('div', {class: 'dlw-readouts'}, [rTrue.el, rPred.el, rVal.el]),
              h('div', {class: 'dlw-row'}, [pics, bars]), h('div', {class: 'dlw-caption', text: 'All channels of the layer (click one):'}), thumbs);

  const draw = () => {
    const k = Math.min(model.get('image'), images.length - 1), l = Math.min(model.get('layer'), layers.length - 1);
    const L = layers[l], c = Math.min(model.get('channel'), L.C - 1), all = maps(k, l), m = all[c], im = images[k];
    image.set(k); layer.set(l); channel.input.max = L.C - 1; channel.set(c);
    // the image, and the chosen map (signed maps red/blue around 0, non-negative ones in magma)
    const px = bytesFromBase64(im.pixels), [H, W] = im.shape;
    const rows = Array.from({length: H}, (_, i) => Array.from(px.slice(i * W, (i + 1) * W)));
    const signed = all.some((ch) => ch.some((row) => row.some((v) => v < 0)));
    const lim = Math.max(...all.map(symmetricRange));
    const colors = signed ? {vmin: -lim, vmax: lim, cmap: 'diverging'} : {vmin: 0, vmax: lim, cmap: 'magma'};   // one scale for all channels
    const big = heatmap(m, {...colors, width: 196, label: `feature map ${c + 1} of ${L.label}`, testid: 'feature-map'});
    onCell(big, m, (i, j) => rVal.set(m[i][j], `map[${i}, ${j}] = ${fmt(m[i][j], 3)}`));
    rVal.set(m[0][0], `map[0, 0] = ${fmt(m[0][0], 3)} (point at the map, or focus it and use the arrow keys, for others)`);
    const fig = (node, caption) => h('figure', {class: 'dlw-figure'}, [node, h('figcaption', {text: caption})]);
    pics.replaceChildren(fig(heatmap(rows, {vmin: 0, vmax: 255, cmap: 'gray', width: 140, label: `the input image: ${withArticle(im.label.toLowerCase())}`}), `input ${H} × ${W}`),
                         fig(big, `${L.label}, channel ${c + 1} of ${L.C} (${L.H} × ${L.W})`));
    thumbs.replaceChildren(...all.map((ch, q) => {
      const b = button('', `show channel ${q + 1} of ${L.label}`, () => { model.set('channel', q); model.save_changes(); });
      b.style.padding = '2px'; b.style.borderColor = q === c ? '#0969da' : ''; b.style.borderWidth = q === c ? '2px' : '';
      b.append(heatmap(ch, {...colors, width: 44, label: `channel ${q + 1}`}), h('div', {text: String(q + 1), style: 'font-size:10px'}));
      return b;
    }));
    // the class probabilities
    const p = im.probs, best = p.indexOf(Math.max(...p));
    rTrue.set(im.label); rPred.set(classes[best], `${classes[best]} (${probText(p[best])})`);
    bars.dataset.value = JSON.stringify(p);
    bars.replaceChildren(h('div', {class: 'dlw-caption', text: 'class probabilities (softmax)'}), ...classes.map((name, q) => h('div',
      {style: 'display:flex;align-items:center;gap:6px;font-size:12px;margin:1px 0'}, [
        h('span', {style: 'width:82px;text-align:right', text: name}),
        h('span', {style: `display:inline-block;height:11px;width:${Math.max(1, 150 * p[q]).toFixed(1)}px;background:${q === best ? '#0969da' : '#8c959f'}`}),
        h('span', {style: 'font-family:var(--jp-code-font-family,monospace)', text: probText(p[q])})])));
  };
  const redraw = redrawer(draw);
  for (const key of ['image', 'layer', 'channel']) model.on(`change:${key}`, redraw);
  draw();
}

export default { render };
