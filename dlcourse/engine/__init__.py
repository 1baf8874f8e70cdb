"""The engines between the kernels and the layers: the convolution engine (argument checks, buffers, the choice of
algorithm, the one forward and backward step) and fusion (layers computed together, below the layer API)."""
