"""What the course's widgets share: the base class, the argument checks, and the small encodings of their state."""
import base64
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from ..data import FASHION_MNIST_CLASSES, fashion_mnist_sample
from ..zoo import lenet5

# The bundled front ends (tools/js/build makes them from ./js) and the one stylesheet. anywidget reads a Path's text
# into the `_esm` and `_css` traits, so the front end travels in every widget's saved state.
STATIC = Path(__file__).parent / 'static'


def _b64(a):  # an array of values 0..255
    "The bytes of a uint8 array as base64 text (how images travel in a widget's state)"
    return base64.b64encode(np.ascontiguousarray(a, np.uint8).tobytes()).decode('ascii')


def _rounded(a, digits):
    "A nested list of Python floats rounded to `digits` decimals: small JSON in the saved state"
    return np.round(np.asarray(a, np.float64), digits).tolist()


class _CourseWidget(anywidget.AnyWidget):
    "Base of the course's widgets: the shared stylesheet, the widget's kind for the tests, a stable repr"
    _css = STATIC / 'widgets.css'
    _dlcourse_widget = traitlets.Unicode('').tag(sync=True)
    _repr_traits = ()

    def __repr__(self):
        args = ', '.join(f"{k}={getattr(self, k)!r}" for k in self._repr_traits)
        return f"{type(self).__name__}({args})"


def _sample_images(per_class=1):  # images per class
    "The first `per_class` test images of each class of the shipped Fashion-MNIST sample: uint8 (N, 28, 28), labels (N,)"
    images, labels = fashion_mnist_sample('test')
    idx = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    idx.sort()
    return images[idx], labels[idx]


def _check_images(images, labels):
    "uint8 images (N, H, W) and their names (class indices of Fashion-MNIST, or strings)"
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise TypeError(f"images must be a uint8 numpy array (N, H, W), got {getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 3 or not 1 <= len(images) <= 20 or not (5 <= images.shape[1] <= 64 and 5 <= images.shape[2] <= 64):
        raise ValueError(f"images must have shape (N, H, W) with 1 <= N <= 20 and 5 <= H, W <= 64, got {images.shape}")
    labels = list(range(len(images))) if labels is None else list(labels)
    if len(labels) != len(images): raise ValueError(f"labels must have one entry per image ({len(images)}), got {len(labels)}")
    return [FASHION_MNIST_CLASSES[int(l)] if isinstance(l, (int, np.integer)) and 0 <= l < 10 else str(l) for l in labels]


def _pretrained_lenet():
    "The pretrained LeNet-5 that ships with the package, whatever weights lie there now"
    return lenet5(pretrained=True).eval()
