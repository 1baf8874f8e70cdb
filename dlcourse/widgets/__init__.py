"""The course's six interactive widgets — activation explorer, sigmoid neuron trainer, convolution, pooling and SGD explorers, feature-map viewer — whose computation runs in the browser, so that they work in JupyterLab and on the static website alike."""
# Each widget is a Python class in a module of its own (traits, argument checks, the same computation done by the
# package) and a front end of the same name in js/, which tools/js/build bundles into static/. nbs/10_widgets.ipynb
# explains how they work.
from .activation_explorer import EXPLORER_FUNCTIONS, ActivationExplorer
from .conv_explorer import CONV_FILTERS, ConvExplorer
from .feature_map_viewer import FeatureMapViewer, feature_layers
from .neuron_trainer import NeuronTrainer
from .pooling_explorer import LECTURE_POOL_EXAMPLE, PoolingExplorer
from .sgd_explorer import SGDExplorer

__all__ = ['EXPLORER_FUNCTIONS', 'CONV_FILTERS', 'LECTURE_POOL_EXAMPLE', 'ActivationExplorer', 'NeuronTrainer', 'ConvExplorer',
           'PoolingExplorer', 'SGDExplorer', 'feature_layers', 'FeatureMapViewer']
