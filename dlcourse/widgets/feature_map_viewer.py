"""The feature-map viewer: the pretrained LeNet-5's feature maps and class probabilities on sample images."""
import base64

import numpy as np
import traitlets

from ..activations import Elementwise
from ..core import Module, check_number
from ..data import FASHION_MNIST_CLASSES, preprocess
from ..losses import softmax
from ._base import STATIC, _b64, _check_images, _CourseWidget, _pretrained_lenet, _rounded, _sample_images



def feature_layers(model,  # a Sequential (e.g. `lenet5()`): its direct layers are run one by one
                   x):     # a batch of inputs (N, C, H, W)
    "The feature maps of `model` on `x`: [(label, (N, C, H, W) output)] of every layer with spatial output (a convolution after its activation), and the final output"
    if not isinstance(model, Module): raise TypeError(f"model must be a Module (a Sequential of layers), got {type(model).__name__}")
    children = list(model.named_children())
    if not children: raise ValueError("model must have layers to look into (a Sequential of layers)")
    shown, prev = [], None          # an activation (an Elementwise layer) is shown with the layer before it
    for k, (name, layer) in enumerate(children):
        x = layer(x)
        nxt = children[k + 1][1] if k + 1 < len(children) else None
        label = f"{prev} → {name}" if isinstance(layer, Elementwise) and prev else name
        if x.ndim == 4 and min(x.shape[2:]) > 1 and not isinstance(nxt, Elementwise): shown.append((label, x))
        prev = None if isinstance(layer, Elementwise) else name
    return shown, x


def _quantised(maps):  # (C, H, W)
    "8-bit maps and their per-channel [lo, hi] (lo and hi rounded outwards to 5 decimals)"
    m = maps.astype(np.float64)
    lo = np.floor(m.min(axis=(1, 2)) * 1e5) / 1e5
    hi = np.ceil(m.max(axis=(1, 2)) * 1e5) / 1e5
    span = np.where(hi > lo, hi - lo, 1.0)[:, None, None]
    q = np.clip(np.round((m - lo[:, None, None]) / span * 255), 0, 255).astype(np.uint8)
    return q, np.stack([lo, hi], 1).tolist()


class FeatureMapViewer(_CourseWidget):
    "The pretrained LeNet-5 on sample images: feature maps by image, layer and channel, and the class probabilities"
    _esm = STATIC / 'feature_map_viewer.js'
    _dlcourse_widget = traitlets.Unicode('feature-map-viewer').tag(sync=True)
    _repr_traits = ('image', 'layer', 'channel')
    images = traitlets.List().tag(sync=True)     # [{'label', 'shape', 'pixels', 'probs', 'maps', 'ranges'}]
    layers = traitlets.List().tag(sync=True)     # [{'label', 'C', 'H', 'W'}]
    classes = traitlets.List().tag(sync=True)
    image = traitlets.Int(0).tag(sync=True)
    layer = traitlets.Int(0).tag(sync=True)
    channel = traitlets.Int(0).tag(sync=True)

    def __init__(self, model=None,              # a Sequential for (N, 1, 28, 28) input; default: `lenet5(pretrained=True)`
                 images=None,                   # uint8 (N, 28, 28); default: one test image per Fashion-MNIST class
                 labels=None,                   # their classes (indices into `classes`)
                 classes=FASHION_MNIST_CLASSES, # the names of the model's outputs
                 image=0, layer=0, channel=0):  # what is shown first
        if images is None: images, labels = _sample_images()
        names = _check_images(images, labels)
        if images.shape[1:] != (28, 28): raise ValueError(f"images must be 28 x 28 (the model's input), got {images.shape}")
        self._model = _pretrained_lenet() if model is None else model
        shown, out = feature_layers(self._model, preprocess(images))
        if out.ndim != 2 or out.shape[1] != len(classes):
            raise ValueError(f"the model's output {out.shape} must have one column per class ({len(classes)} classes)")
        probs = softmax(out.astype(np.float64), axis=1)
        layers = [{'label': label, 'C': a.shape[1], 'H': a.shape[2], 'W': a.shape[3]} for label, a in shown]
        states = []
        for n in range(len(images)):
            parts = [_quantised(a[n]) for _, a in shown]
            states.append({'label': names[n], 'shape': [28, 28], 'pixels': _b64(images[n]), 'probs': _rounded(probs[n], 6),
                           'maps': _b64(np.concatenate([q.ravel() for q, _ in parts])), 'ranges': [r for _, r in parts]})
        self._images = images
        super().__init__(images=states, layers=layers, classes=[str(c) for c in classes],
                         image=check_number(image, 'image', 0, len(images) - 1, integer=True),
                         layer=check_number(layer, 'layer', 0, len(layers) - 1, integer=True),
                         channel=check_number(channel, 'channel', 0, 1023, integer=True))

    @traitlets.validate('image', 'layer', 'channel')
    def _check_assignment(self, proposal):
        "Values set from Python after construction are checked like the constructor's arguments"
        name, v = proposal['trait'].name, proposal['value']
        count = {'image': len(self.images), 'layer': len(self.layers), 'channel': 1024}[name]
        return check_number(v, name, 0, count - 1, integer=True)

    def feature_maps(self, layer=None):  # which layer (default: the one shown)
        "The exact feature maps of a layer for all images, (N, C, H, W), computed by the model"
        shown, _ = feature_layers(self._model, preprocess(self._images))
        return shown[self.layer if layer is None else layer][1]

    @property
    def probabilities(self):
        "The model's class probabilities for the images (N, classes): softmax of its output"
        _, out = feature_layers(self._model, preprocess(self._images))
        return softmax(out.astype(np.float64), axis=1)

    def decoded(self, image, layer):
        "The maps of one image and layer as the view decodes them from the state (8 bits per value): (C, H, W)"
        L, st = self.layers[layer], self.images[image]
        start = sum(l['C'] * l['H'] * l['W'] for l in self.layers[:layer])
        q = np.frombuffer(base64.b64decode(st['maps']), np.uint8)[start:start + L['C'] * L['H'] * L['W']]
        lo, hi = np.array(st['ranges'][layer]).T
        return lo[:, None, None] + q.reshape(L['C'], L['H'], L['W']) / 255 * (hi - lo)[:, None, None]
