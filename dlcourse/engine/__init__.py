"""The engines between the kernels and the layers: the convolution engine (argument checks, buffers, the choice of
algorithm, the one forward and backward step), fusion (layers computed together, below the layer API), the matrix
products of the fully connected layers, batch normalisation's passes, the optimizer's step, compiling a first training
step's kernels on two cores (`ahead`), and the allocator's handling of freed memory (`memory`)."""
from . import memory                 # keeps freed memory for the next step, from the first array the engine allocates
