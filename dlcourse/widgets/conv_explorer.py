"""The convolution explorer: output size, stride, padding and "Passt nicht!", and a filter on a real image."""
import base64

import numpy as np
import traitlets

from ..conv import Conv2d, conv2d, conv_output_size
from ..core import check_choice, check_number
from ..data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, normalize
from ._base import STATIC, _b64, _check_images, _CourseWidget, _pretrained_lenet, _sample_images

MAX_I = 256        # the largest input size of the explorer's grid (its view has a number box for it): AlexNet's 227 fits

CONV_FILTERS = {   # the hand-made filters of the convolution explorer
    'vertical edges': [[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]],      # Sobel
    'horizontal edges': [[-1., -2., -1.], [0., 0., 0.], [1., 2., 1.]],
    'blur': (np.outer([1., 2., 1.], [1., 2., 1.]) / 16).tolist(),         # a small Gaussian
    'sharpen': [[0., -1., 0.], [-1., 5., -1.], [0., -1., 0.]],
}


def _first_conv_filters(model):
    "The filters of the first convolution of `model` as float64 (K, kh, kw) (its first input channel)"
    conv = next((m for _, m in model.named_modules() if isinstance(m, Conv2d)), None)
    if conv is None: raise ValueError(f"model has no Conv2d layer: {type(model).__name__}")
    return conv.weight.data[:, 0].astype(np.float64)


class ConvExplorer(_CourseWidget):
    "Output size, stride, padding and 'Passt nicht!' on a drawn grid; a filter applied to a Fashion-MNIST image"
    _esm = STATIC / 'conv_explorer.js'
    _dlcourse_widget = traitlets.Unicode('conv-explorer').tag(sync=True)
    _repr_traits = ('I', 'F', 'S', 'P', 'filter')
    I = traitlets.Int(7).tag(sync=True)
    F = traitlets.Int(3).tag(sync=True)
    S = traitlets.Int(1).tag(sync=True)
    P = traitlets.Int(0).tag(sync=True)
    position = traitlets.Int(0).tag(sync=True)       # the filter position shown, in raster order
    image = traitlets.Int(0).tag(sync=True)
    filter = traitlets.Unicode('vertical edges').tag(sync=True)
    images = traitlets.List().tag(sync=True)          # [{'label', 'shape', 'pixels': base64 of uint8}]
    filters = traitlets.Dict().tag(sync=True)         # name -> rows of weights
    mean = traitlets.Float(FASHION_MNIST_MEAN).tag(sync=True)
    std = traitlets.Float(FASHION_MNIST_STD).tag(sync=True)

    def __init__(self, I=7, F=3, S=1, P=0,         # input size (1 to 256: AlexNet's 227 too), filter size, stride, padding
                 filter='vertical edges',            # a key of CONV_FILTERS or 'LeNet-5 C1 filter k' (k = 1..6)
                 image=0,                            # which image
                 images=None,                        # uint8 (N, H, W); default: one test image per Fashion-MNIST class
                 labels=None,                        # the images' class indices or names
                 lenet=True):                        # offer the pretrained LeNet-5's first-layer filters?
        if images is None: images, labels = _sample_images()
        names = _check_images(images, labels)
        filters = dict(CONV_FILTERS)
        if lenet:
            for k, w in enumerate(_first_conv_filters(_pretrained_lenet()), 1): filters[f'LeNet-5 C1 filter {k}'] = w.tolist()
        super().__init__(I=check_number(I, 'I', 1, MAX_I, integer=True), F=check_number(F, 'F', 1, 15, integer=True),
                         S=check_number(S, 'S', 1, 8, integer=True), P=check_number(P, 'P', 0, 8, integer=True),
                         image=check_number(image, 'image', 0, len(images) - 1, integer=True),
                         filter=check_choice(filter, 'filter', list(filters)), filters=filters,
                         images=[{'label': n, 'shape': list(im.shape), 'pixels': _b64(im)} for n, im in zip(names, images)])

    @traitlets.validate('I', 'F', 'S', 'P', 'image', 'filter')
    def _check_assignment(self, proposal):
        "Values set from Python after construction are checked like the constructor's arguments"
        name, v = proposal['trait'].name, proposal['value']
        if name == 'filter': return check_choice(v, 'filter', list(self.filters))
        low, high = {'I': (1, MAX_I), 'F': (1, 15), 'S': (1, 8), 'P': (0, 8), 'image': (0, len(self.images) - 1)}[name]
        return check_number(v, name, low, high, integer=True)

    @property
    def output_size(self):
        "O = (I - F + 2P)/S + 1 by `conv_output_size`, or None where the filter does not fit (Passt nicht!)"
        try: return conv_output_size(self.I, self.F, self.S, self.P)
        except ValueError: return None

    def input(self, image=None):  # which image (default: the one shown)
        "The image as the view computes with it: float64 (H, W), scaled to [0, 1] and normalised"
        im = self.images[self.image if image is None else image]
        px = np.frombuffer(base64.b64decode(im['pixels']), np.uint8).reshape(im['shape'])
        return normalize(px / 255.0, self.mean, self.std)

    def activation_map(self, image=None, filter=None):
        "The activation map the view shows, computed by `dlcourse.conv2d` with stride S and padding P: (OH, OW)"
        w = np.array(self.filters[self.filter if filter is None else filter], np.float64)
        return conv2d(self.input(image)[None, None], w[None, None], stride=self.S, padding=self.P)[0, 0]
