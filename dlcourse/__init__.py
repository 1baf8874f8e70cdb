"""A literate deep-learning course: convolutional networks from the sigmoid neuron to the model zoo, with Numba kernels and interactive widgets

Modules:

- `dlcourse.engine.ahead`: Compiling ahead: the cold start of a training run on two cores instead of one.
- `dlcourse.engine.conv`: The convolution engine: argument checks, reusable buffers, the choice among six algorithms, and the one forward and backward step of a convolution, used by `Conv2d`, `conv2d` and the fused layers alike.
- `dlcourse.engine.fusion`: Fusion below the layer API. A `Sequential` asks each layer whether it can run together with the layers after it (`Module.fuse`); a stride-1 convolution followed by an activation and 2x2 pooling answers with a `ConvActPool` step, which computes all three in one pass of the fused kernel and their backward step in one more. Batch normalisation followed by a ReLU answers with a `BatchNormReLU` step, which ResNet's residual block also uses for the sum at its end, relu(bn(x) + shortcut): the batch-norm kernel adds and activates while it normalises. The network and its layers stay what the user built: same parameters, same results, same checks; only the way they are computed changes.
- `dlcourse.engine.matmul`: Matrix products for the layers, without transposed copies: a @ b.T (forward of a fully connected layer), a @ b (its input gradient) and a.T @ b (its weight gradient). The course's kernels take small products, where calling BLAS costs more than the arithmetic (thread start-up, and OpenBLAS's workers competing with Numba's); BLAS takes large ones, reading a transposed operand in place (a transposed view is a column-major matrix to BLAS); a weight gradient over a short batch is a few rank-one updates, memory-bound, done in one pass over the gradient (`rank_update`).
- `dlcourse.engine.norm`: Batch normalisation for BatchNorm2d (lesson 08): the batch's statistics, the normalisation and its backward step as kernels (kernels.norm), each one pass over the data per channel instead of the several passes and temporaries of the lesson's NumPy functions `batch_norm` and `batch_norm_backward`, which the tests hold them to. A ReLU after the layer, and a residual added before it, can go into the normalising pass (`engine.fusion.BatchNormReLU`). The arrays arrive checked by the layer: x and dout C-contiguous (N, C, H, W), the per-channel arrays (C,) of x's dtype.
- `dlcourse.kernels.act`: Activation functions in the kernels: one scalar definition of each activation and of its derivative, used by the activation layers and by the fused layers alike, and the elementwise kernels over whole arrays. The layers call `apply_act` and `apply_grad`, which run small arrays on the calling thread with the span kernels: a network whose activation layers are all small (LeNet-5) never compiles the parallel kernels, a second or two of its cold start.
- `dlcourse.kernels.config`: Every setting of the kernels in one place: the compiler flags, the threading layer, and the thresholds that choose between algorithms and between running on one thread or on Numba's pool. The thresholds were measured on 2-core x86-64 machines (AVX2 and AVX-512); `bench/` shows how. Kernels read them when they are compiled: change them before the first call, or delete Numba's cache (`__pycache__`) after changing them.
- `dlcourse.kernels.conv`: Convolution kernels: im2col/col2im and the layout copies around a matrix product (any stride), two matrix products of the shapes BLAS is slow at, the direct kernels that convolve stride-1 layers on "wide rows" without a patch matrix, and the register-tile kernels that convolve channels-last float32 layers without one (`simd`'s vectors). `dlcourse.engine.conv` chooses among them and validates their arguments.
- `dlcourse.kernels.fused`: Fused kernels: a stride-1 convolution, its activation and 2x2 pooling in one pass over the data (and the backward step through pooling and activation onto the convolution's wide rows), and a matrix product's bias and activation. They reuse the convolution's wide-row kernel (kernels.conv), the activations (kernels.act) and max pooling's rule (kernels.pool): nothing here defines them again, so the fused layers compute what the layers compute one by one, also at -inf, inf and NaN.
- `dlcourse.kernels.jit`: The one place that compiles kernels: `jit` applies dlcourse's Numba flags (kernels.config) to a function, and the threading layer is chosen here, before the first parallel kernel runs.
- `dlcourse.kernels.norm`: Batch normalisation in passes over each channel: its statistics, the normalisation with the affine step, and the backward step with the weight and bias gradients, each one kernel parallel over the channels. The normalisation may add a residual and apply a ReLU in the same pass. Then local response normalisation (AlexNet's and GoogLeNet's LRN), one pass per image and channel forward and two backward, parallel over both. The input is seen as (N, C, S), S = H*W: a channel is N contiguous runs of S values. Batch norm's sums are kept in float64, LRN's window sums (n squares) in x's dtype.
- `dlcourse.kernels.optim`: The optimizer's update in one pass over a parameter: SGD with momentum, Nesterov momentum, dampening and weight decay.
- `dlcourse.kernels.prebuilt`: Kernels compiled ahead of time: the machine code of the kernel versions that training runs use first, shipped with the package, so that a fresh install's first `dlcourse train` loads them in milliseconds instead of compiling them.
- `dlcourse.kernels.simd`: Eight float32 values as one machine register, for kernels that keep a tile of results in registers: a vector type for Numba and eight operations on it, each a few LLVM instructions (load, broadcast, store, multiply-add, add, zero, one value, the sum of all eight).
- `dlcourse.notebooks`: `dlcourse notebooks DIR`: the course notebooks, and the data they read, copied out of the installed package, so that whoever installed dlcourse from a wheel (`pip install "dlcourse[course]"`) can open the course in JupyterLab."""

# AUTOGENERATED! DO NOT EDIT! File to edit: ../nbs/index.ipynb.

# %% auto #0
__all__ = []

# %% ../nbs/index.ipynb #2e9b6ed6
__version__ = "0.1.0"

from dlcourse import (core, activations, neuron, toydata, layers, losses, gradcheck, learner, optim, init, data, conv, pool,
                      zoo, interop, checkpoint)
from dlcourse.core import *
from dlcourse.activations import *
from dlcourse.neuron import *
from dlcourse.toydata import *
from dlcourse.layers import *
from dlcourse.losses import *
from dlcourse.gradcheck import *
from dlcourse.learner import *
from dlcourse.optim import *
from dlcourse.conv import *
from dlcourse.pool import *
from dlcourse.data import (DataLoader, FASHION_MNIST_CLASSES, fashion_mnist, fashion_mnist_sample, mnist, preprocess,
                           read_idx)
from dlcourse.zoo import (lenet5, alexnet, googlenet, vgg16, resnet18, Inception, BasicBlock, LocalResponseNorm, Dropout,
                          GlobalAvgPool2d, BatchNorm2d)
from dlcourse.summary import summary, Summary     # note: `dlcourse.summary` is then the function; the module stays importable
from dlcourse.interop import to_torch, from_torch
from dlcourse.checkpoint import save_checkpoint, load_checkpoint

__all__ = ([name for m in (core, activations, neuron, toydata, layers, losses, gradcheck, learner, optim, conv, pool)
            for name in m.__all__]
           + ['DataLoader', 'FASHION_MNIST_CLASSES', 'fashion_mnist', 'fashion_mnist_sample', 'mnist', 'preprocess',
              'read_idx', 'lenet5', 'alexnet', 'googlenet', 'vgg16', 'resnet18', 'Inception', 'BasicBlock', 'summary',
              'Summary', 'to_torch', 'from_torch', 'save_checkpoint', 'load_checkpoint', 'LocalResponseNorm', 'Dropout',
              'GlobalAvgPool2d', 'BatchNorm2d', 'data', 'init', 'zoo', 'interop', 'checkpoint'])
