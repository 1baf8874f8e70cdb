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
DIRECT_REGISTER_TILES = True   # float32 direct layers run with register tiles (engine.conv.use_direct_tiles): four filters
                           # times 24 positions of the wide rows in registers. The small ResNet-18's 8-channel layers took
                           # 0.92 of the time forward, 0.97 backward (its training step 0.976)
FULL_CORRELATION_MIN_C = 8 # input channels from which a direct layer with "same" padding computes dE/dx as a forward
                           # convolution of the padded output gradient (engine.conv.use_full_correlation): dE/dx and its
                           # layout copies in 0.8 of the time on the small ResNet-18's 8- and 16-channel layers; LeNet-5's
                           # C1 (1 input channel: one filter of the forward kernel) took 2.1 times as long
PATCH_BUDGET = 1 << 24     # values of an im2col patch matrix at most (64 MB in float32); larger batches go in chunks
POINTWISE_BATCH_MIN_C = 32 # input channels from which a 1x1 convolution is one GEMM for the whole batch (its input copied
                           # into the GEMM's layout) instead of one per image: 0.6-0.9 of the time in every such zoo layer
                           # timed, most on small maps (GoogLeNet's 6x6 and 3x3); with fewer channels the copies cost more
CHANNELS_LAST_MIN_C = 16   # im2col takes its patches from a channels-last copy of the input for layers with at least this
CHANNELS_LAST_MAX_OW = 16  # many input channels, output rows of at most this many values (a patch row is then kh runs of
CHANNELS_LAST_MIN_M = 512  # kw*C values, not C*kh*kw runs of OW) and at least this many output positions in the batch:
                           # 0.66-0.96 of the time on the small ResNet-18's, ResNet-18's and GoogLeNet's 7x7 to 16x16
                           # maps; with fewer positions (ResNet-18's 2x2 and 4x4 maps at batch 8) transposing the
                           # filters costs more than the patches save, up to 3.7x the time
CHANNELS_LAST_PART = 1 << 20   # values of the channels-last patch matrix at most that are copied and multiplied (forward),
                               # or computed and added back (backward), in one part while they are in cache: on the small
                               # ResNet-18's 7x7 and 4x4 layers at batch 128 (two parts of 64 images) 0.85 of the forward
                               # step's time and 0.93-0.97 of the input gradient's, timed alone; in the training step,
                               # where the other layers' data share the cache, about half a percent of it
REGISTER_TILE_MIN_C = 16        # channels in and out from which a float32 stride-1 layer uses the register-tile kernels
REGISTER_TILE_MAX_WEIGHTS = 1 << 16   # (engine.conv.use_register_tiles), for filters of up to this many weights (256 KB:
                                # they stay in cache): the small ResNet-18's 16- to 64-channel layers and ResNet-18's
                                # 64-channel ones. Its training step took 0.92 of the time (ResNet-18 on 64x64: 0.96);
                                # allowing 2^19 weights made GoogLeNet's 1.15 times as slow and ResNet-18's no faster
REGISTER_TILE_CHUNK = 1 << 14   # values of input and output gradient (channels last, 64 KB) whose filter gradient sums are
                                # computed while they are in cache: 3 images of the small ResNet-18's 4x4 maps at 64
                                # channels (0.9 of the time with 7-28 images; on 7x7 and 14x14 maps the same)
REGISTER_TILE_STRIDED_MIN_C = 8 # input channels from which a strided float32 layer uses them: the small ResNet-18's
                                # three 3x3 stride-2 layers took 0.70-0.87 of their time in the step (the step 0.97);
                                # leaving out its 8-channel one made the step 1.02 times as slow
REGISTER_TILE_SLICES = 4        # slices of the batch whose filter gradients are computed side by side (a fixed number, so
                                # that the sums do not depend on the threads); 2, 4 and 8 took the same time on 2 cores
GEMM_PER_IMAGE = 2048      # output positions per image from which every image gets its own GEMM, the bias inside it
                           # (AlexNet's conv1: 3,025; conv2: 729 is faster as one large GEMM)
SPLIT_K_MAX_WEIGHTS = 1 << 12  # K*C*kh*kw up to which im2col's filter gradient is a split-K product in Numba (else BLAS:
                               # from 4,608 weights, e.g. ResNet-18's 32x16x3x3, it was faster in every zoo layer timed)
DW_TRANSPOSED_MIN_COLUMNS = 512  # columns (N*OH*OW) from which BLAS computes the filter gradient transposed, X G^T, and
DW_TRANSPOSED_CACHED = 1 << 18   # adds it back: for gradients of up to this many weights (they stay in cache while added),
DW_TRANSPOSED_LONG = 8192        # larger ones only from this many columns. Adding it back made ResNet-18's layers on
                                 # 2x2-4x4 maps (32-128 columns) 1.5-3.5x slower, VGG-16's 512x512 layers (784) 1.4x
SPLIT_K_PIECES = 16        # pieces of the long dimension in that product, summed afterwards
DIRECT_BATCH_SLICES = 8    # slices of the batch whose filter gradients the direct backward computes side by side (a
                           # fixed number, so that the sums do not depend on the threads; the "same"-padding kernel
                           # runs one slice per item: 8 keep up to 8 cores busy, and cost no more than 2 or 4 on 2)

# Matrix products of the fully connected layers
BLAS_MIN_MACS = 1 << 25    # multiply-adds from which a product goes to BLAS (below: the course's gemm_nt). High, because
                           # after a product OpenBLAS's threads spin on the cores Numba's next kernel needs: LeNet-5's C5 at
                           # batch 256 (12 million) through BLAS made the whole training step 1.6x slower
RANK_UPDATE_MAX = 16       # batch up to which a large weight gradient a.T @ b is rank-one updates in Numba (else BLAS)
BLAS_THREAD_TIMEOUT = 4    # OpenBLAS's workers spin 2**4 cycles after a product, then sleep (its default, 2**28 cycles, is
                           # ~0.1 s of a core that Numba's next kernel needs; engine.matmul.quiet_blas_threads)

# Memory: freed memory glibc's allocator keeps for the next training step instead of returning it to the system (bytes;
# 0 leaves the allocator as it is). engine.memory.keep_freed_memory applies it when dlcourse is imported
KEEP_FREED_MEMORY = 1 << 30

# The cold start: a training run's first step compiles its kernels on two cores, a helper process taking the second
# half of them (engine.ahead, for the steps it has a record of)
COMPILE_AHEAD = True
