"""The activation explorer: sigmoid, tanh, ReLU and leaky ReLU with their derivatives, value, gradient and saturation."""
import traitlets

from ..activations import ACTIVATIONS
from ..core import check_choice, check_number
from ._base import STATIC, _CourseWidget

# The lecture's four, by their names in the package's registry; the view draws them with its own formulas
# (js/activation_explorer.js), which the tests check against the registry's functions
EXPLORER_FUNCTIONS = ('sigmoid', 'tanh', 'relu', 'leaky_relu')


class ActivationExplorer(_CourseWidget):
    "Sigmoid, tanh, ReLU and leaky ReLU with their derivatives: value, gradient and saturation at a chosen x"
    _esm = STATIC / 'activation_explorer.js'
    _dlcourse_widget = traitlets.Unicode('activation-explorer').tag(sync=True)
    _repr_traits = ('activation', 'x')
    activation = traitlets.Unicode('sigmoid').tag(sync=True)
    x = traitlets.Float(0.0).tag(sync=True)
    negative_slope = traitlets.Float(0.1).tag(sync=True)
    functions = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, activation='sigmoid',  # the function shown first: one of `functions`
                 x=0.0,                       # the pre-activation value, in [-8, 8]
                 functions=EXPLORER_FUNCTIONS,  # the functions to choose from, of 'sigmoid', 'tanh', 'relu', 'leaky_relu'
                 negative_slope=0.1):         # α of leaky ReLU, in [0, 0.5]
        if isinstance(functions, str) or not hasattr(functions, '__iter__'):
            raise TypeError(f"functions must be a sequence of names from {list(EXPLORER_FUNCTIONS)}, got {functions!r}")
        functions = [check_choice(f, 'functions', EXPLORER_FUNCTIONS) for f in functions]
        if not functions: raise ValueError("functions must name at least one activation function")
        super().__init__(functions=functions, activation=check_choice(activation, 'activation', functions),
                         x=check_number(x, 'x', -8, 8), negative_slope=check_number(negative_slope, 'negative_slope', 0, 0.5))

    @traitlets.validate('activation', 'x', 'negative_slope')
    def _check_assignment(self, proposal):
        "Values set from Python after construction are checked like the constructor's arguments"
        name, v = proposal['trait'].name, proposal['value']
        if name == 'activation': return check_choice(v, 'activation', self.functions)
        return check_number(v, name, *{'x': (-8, 8), 'negative_slope': (0, 0.5)}[name])

    def _f(self, grad=False):
        "The chosen activation function, or its derivative with `grad`, from the package's registry"
        a = ACTIVATIONS[self.activation]
        f = a.grad if grad else a.fn
        return (lambda x: f(x, self.negative_slope)) if a.param else f

    @property
    def value(self):
        "f(x), computed by the package"
        return float(self._f()(self.x))

    @property
    def gradient(self):
        "f'(x), computed by the package"
        return float(self._f(grad=True)(self.x))

    @property
    def saturated(self):
        "Is the derivative below 1% of its maximum (sigmoid, tanh) or zero (ReLU)?"
        dmax = 0.25 if self.activation == 'sigmoid' else 1.0
        return self.activation != 'leaky_relu' and self.gradient / dmax < 0.01
