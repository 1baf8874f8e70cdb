"""The pooling explorer: max, sum and average pooling of the lecture's example and of real activation maps."""
import numpy as np
import traitlets

from ..conv import conv2d
from ..core import check_choice, check_number
from ..data import FASHION_MNIST_CLASSES, normalize
from ..pool import avg_pool2d, max_pool2d, sum_pool2d
from ._base import STATIC, _CourseWidget, _rounded, _sample_images
from .conv_explorer import CONV_FILTERS

LECTURE_POOL_EXAMPLE = [[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]   # lesson 05: max 2x2/2 gives [[6, 8], [3, 4]]
_POOLINGS = {'max': max_pool2d, 'sum': sum_pool2d, 'avg': avg_pool2d}           # the modes, and the package's function of each


def _edge_maps(images, names):
    "Real activation maps: ReLU(vertical and horizontal Sobel edges) of normalised images, rounded to 2 decimals"
    maps = []
    for im, name in zip(images, names):
        x = normalize(im / 255.0)[None, None]                                     # (1, 1, 28, 28)
        w = np.array([CONV_FILTERS['vertical edges'], CONV_FILTERS['horizontal edges']])[:, None]   # (2, 1, 3, 3)
        for k, edge in enumerate(('vertical', 'horizontal')):
            a = np.maximum(conv2d(x, w[k:k + 1])[0, 0], 0)                        # (26, 26)
            maps.append({'name': f'{name}: {edge} edges after ReLU', 'values': _rounded(a, 2)})
    return maps


class PoolingExplorer(_CourseWidget):
    "Max, sum and average pooling of the lecture's 4x4 example and of real activation maps; window, stride, overlap"
    _esm = STATIC / 'pooling_explorer.js'
    _dlcourse_widget = traitlets.Unicode('pooling-explorer').tag(sync=True)
    _repr_traits = ('mode', 'F', 'S')
    maps = traitlets.List().tag(sync=True)         # [{'name', 'values': rows}]
    map = traitlets.Int(0).tag(sync=True)          # which map
    mode = traitlets.Unicode('max').tag(sync=True)
    F = traitlets.Int(2).tag(sync=True)
    S = traitlets.Int(2).tag(sync=True)
    window = traitlets.Int(0).tag(sync=True)       # the window drawn, in raster order of the output

    def __init__(self, mode='max',    # 'max', 'sum' or 'avg'
                 F=2, S=2,            # window size and stride, 1 to 6
                 map=0,               # which map: 0 is the lecture's example
                 maps=None):          # extra maps {name: 2-D array}; default: edge maps of two Fashion-MNIST images
        if maps is None:
            images, labels = _sample_images()
            extra = _edge_maps(images[[0, 1]], [FASHION_MNIST_CLASSES[l] for l in labels[[0, 1]]])
        else:
            if not isinstance(maps, dict): raise TypeError(f"maps must be a dict name -> 2-D array, got {type(maps).__name__}")
            extra = []
            for name, a in maps.items():
                a = np.asarray(a, np.float64)
                if a.ndim != 2 or not (1 <= a.shape[0] <= 40 and 1 <= a.shape[1] <= 40) or not np.isfinite(a).all():
                    raise ValueError(f"maps[{name!r}] must be a finite 2-D array of at most 40 x 40, got shape {a.shape}")
                extra.append({'name': str(name), 'values': a.tolist()})
        all_maps = [{'name': 'the lecture example (4 × 4)', 'values': [[float(v) for v in r] for r in LECTURE_POOL_EXAMPLE]}] + extra
        super().__init__(maps=all_maps, map=check_number(map, 'map', 0, len(all_maps) - 1, integer=True),
                         mode=check_choice(mode, 'mode', _POOLINGS), F=check_number(F, 'F', 1, 6, integer=True),
                         S=check_number(S, 'S', 1, 6, integer=True))

    @traitlets.validate('mode', 'F', 'S', 'map')
    def _check_assignment(self, proposal):
        "Values set from Python after construction are checked like the constructor's arguments"
        name, v = proposal['trait'].name, proposal['value']
        if name == 'mode': return check_choice(v, 'mode', _POOLINGS)
        return check_number(v, name, 0 if name == 'map' else 1, len(self.maps) - 1 if name == 'map' else 6, integer=True)

    def input(self, map=None):
        "The map as an array (H, W)"
        return np.array(self.maps[self.map if map is None else map]['values'], np.float64)

    @property
    def output(self):
        "The pooled map the view shows, computed by the package's max_pool2d, sum_pool2d or avg_pool2d"
        return _POOLINGS[self.mode](self.input()[None, None], self.F, self.S)[0, 0]
