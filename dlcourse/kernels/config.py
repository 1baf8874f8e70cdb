"""Every setting of the kernels in one place: the compiler flags, the threading layer, and the thresholds that choose
between algorithms and between running on one thread or on Numba's pool. The thresholds were measured on 2-core x86-64
machines (AVX2 and AVX-512); `bench/` shows how. Kernels read them when they are compiled: change them before the first
call, or delete Numba's cache (`__pycache__`) after changing them."""

# Numba's thread pool: TBB first (the `tbb` package, a dependency on x86-64): it starts a parallel loop in microseconds
# and its idle threads sleep. Numba's own workqueue next (threads sleep too, but starting a loop costs ~35-100 us, which
# made LeNet-5's training step 1.7x slower); OpenMP last: its idle threads spin, and on a busy machine one parallel loop
# then takes milliseconds. The user's NUMBA_THREADING_LAYER or NUMBA_THREADING_LAYER_PRIORITY wins over this list.
THREADING_LAYERS = ['tbb', 'workqueue', 'omp']

# LLVM fast-math without 'nnan' and 'ninf': sums may be reassociated (vectorised), NaN and inf keep their meaning.
FASTMATH = frozenset({'nsz', 'arcp', 'contract', 'afn', 'reassoc'})

# Starting a parallel loop costs a few us (TBB) to 35 us (workqueue): below these sizes a kernel runs on the calling thread.
SERIAL_MACS = 1 << 20      # multiply-adds (the convolution and matrix-product kernels)
SERIAL_VALUES = 1 << 17    # values read (memory-bound kernels: pooling, activations, layout copies); LeNet-5's C3 maps
                           # at batch 64 are 102,400 values

# Convolution: which algorithm
DIRECT_MAX_WEIGHTS = 4096  # K*C*kh*kw up to which a stride-1 convolution uses the direct kernels (LeNet-5's layers)
PATCH_BUDGET = 1 << 24     # values of an im2col patch matrix at most (64 MB in float32); larger batches go in chunks
GEMM_PER_IMAGE = 2048      # output positions per image from which every image gets its own GEMM, the bias inside it
                           # (AlexNet's conv1: 3,025; conv2: 729 is faster as one large GEMM)
SPLIT_K_MAX_WEIGHTS = 1 << 12  # K*C*kh*kw up to which im2col's filter gradient is a split-K product in Numba (else BLAS:
                               # from 4,608 weights, e.g. ResNet-18's 32x16x3x3, it was faster in every zoo layer timed)
SPLIT_K_PIECES = 16        # pieces of the long dimension in that product, summed afterwards
DIRECT_BATCH_SLICES = 4    # slices of the batch whose filter gradients the direct backward computes side by side

# Matrix products of the fully connected layers
BLAS_MIN_MACS = 1 << 25    # multiply-adds from which a product goes to BLAS (below: the course's gemm_nt). High, because
                           # after a product OpenBLAS's threads spin on the cores Numba's next kernel needs: LeNet-5's C5 at
                           # batch 256 (12 million) through BLAS made the whole training step 1.6x slower
RANK_UPDATE_MAX = 16       # batch up to which a large weight gradient a.T @ b is rank-one updates in Numba (else BLAS)
BLAS_THREAD_TIMEOUT = 4    # OpenBLAS's workers spin 2**4 cycles after a product, then sleep (its default, 2**28 cycles, is
                           # ~0.1 s of a core that Numba's next kernel needs; engine.matmul.quiet_blas_threads)

# The cold start: a training run's first step compiles its kernels on two cores, a helper process taking the second
# half of them (engine.ahead, for the steps it has a record of)
COMPILE_AHEAD = True
