"""One library's side of the benchmark suite: a process that imports only dlcourse or only PyTorch and times what
bench/run.py asks for.

    python bench/worker.py dlcourse|torch        # serve JSON requests, one per line on stdin (what run.py does)
    python bench/worker.py dlcourse|torch --rss  # peak memory of AlexNet forward + backward at batch 8, then exit
    python bench/worker.py dlcourse|torch --cold [--unfused] # the first LeNet-5 training step of a fresh process
    python bench/worker.py dlcourse --cold-train DIR [--no-ahead]  # `dlcourse train`'s first step (output in DIR)

Each library runs in its own process, with the environment it was started with: PyTorch never sees a variable that
dlcourse (or this suite) sets, and the two libraries' thread pools never share a process. Answers are JSON lines that
start with '@@ ' (anything else a library prints is ignored by run.py).
"""
import gzip
import json
import os
import resource
import sys
import time

import numpy as np

FRAMEWORK = sys.argv[1] if len(sys.argv) > 1 else 'dlcourse'
FASHION = '/usr/share/datasets/fashion-mnist'
MEAN, STD = 0.2860405969887955, 0.3530242445149226        # Fashion-MNIST pixel statistics (dlcourse.data's constants)
# name, N, C, K, H (= W), kernel, stride, padding: every convolution of LeNet-5 (batch 64) and AlexNet (batch 8)
CONV_CASES = [
    ('LeNet-5 C1   1->6   5x5 p2', 64, 1, 6, 28, 5, 1, 2),
    ('LeNet-5 C3   6->16  5x5', 64, 6, 16, 14, 5, 1, 0),
    ('LeNet-5 C5  16->120 5x5', 64, 16, 120, 5, 5, 1, 0),
    ('AlexNet conv1   3->96 11x11/4', 8, 3, 96, 227, 11, 4, 0),
    ('AlexNet conv2  96->256 5x5 p2', 8, 96, 256, 27, 5, 1, 2),
    ('AlexNet conv3 256->384 3x3 p1', 8, 256, 384, 13, 3, 1, 1),
    ('AlexNet conv4 384->384 3x3 p1', 8, 384, 384, 13, 3, 1, 1),
    ('AlexNet conv5 384->256 3x3 p1', 8, 384, 256, 13, 3, 1, 1),
    ('1x1 conv 192->64, 28x28', 8, 192, 64, 28, 1, 1, 0),
    ('3x3/2 conv 64->128, 56x56', 8, 64, 128, 56, 3, 2, 1),
]
# label, zoo builder, its arguments, input shape (N, C, H, W), target ratio: the zoo's networks, trained the same way in
# both libraries (PyTorch gets `dlcourse.interop.to_torch` of the same dlcourse model, so the networks are identical)
ZOO_CASES = [
    ('ResNet-18 w8 small stem, 1x28x28, batch 128', 'resnet18', dict(num_classes=10, in_channels=1, small_input=True, width=8),
     (128, 1, 28, 28), 1.0),
    ('GoogLeNet, 3x96x96, batch 4', 'googlenet', dict(num_classes=10), (4, 3, 96, 96), 1.0),
    ('ResNet-18, 3x64x64, batch 8', 'resnet18', dict(num_classes=10), (8, 3, 64, 64), 1.2),
    ('AlexNet, 3x227x227, batch 4', 'alexnet', dict(), (4, 3, 227, 227), 1.2),
    ('VGG-16, 3x224x224, batch 1', 'vgg16', dict(), (1, 3, 224, 224), 1.2),
]
# what a layer type is called in the breakdown, by layer class (the same names in dlcourse and torch.nn)
LAYER_TYPES = {'Conv2d': 'convolution', 'ConvActPool': 'convolution', 'Linear': 'fully connected',
               'BatchNorm2d': 'batch norm', 'ReLU': 'activation', 'Tanh': 'activation', 'Sigmoid': 'activation',
               'MaxPool2d': 'pooling', 'AvgPool2d': 'pooling', 'GlobalAvgPool2d': 'pooling', 'AdaptiveAvgPool2d': 'pooling',
               'LocalResponseNorm': 'LRN', 'Flatten': 'other', 'Identity': 'other',
               'Dropout': 'dropout'}


def conv_label(name, m):
    "A convolution's line in a per-layer profile: its name in the model, channels, filter size and stride (both libraries)"
    (kh, kw), s = m.kernel_size, m.stride[0]                        # pairs in dlcourse and in torch.nn
    return f"{name} {m.in_channels}->{m.out_channels} {kh}x{kw}" + (f" /{s}" if s != 1 else '')


def layer_breakdown(step, spent, steps):
    """Time `steps` training steps after one warm-up; `spent` (layer type -> seconds) is filled by the timing wrappers or
    hooks around the layers. Returns the milliseconds per step of each layer type, the rest, and the total"""
    step(); spent.clear()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    total = (time.perf_counter() - t0) / steps
    out = {k: 1e3 * v / steps for k, v in spent.items()}
    out['rest (loss, optimizer, bookkeeping)'] = 1e3 * total - sum(out.values())
    return dict(ms=out, total=1e3 * total)


def zoo_model(case):
    "The dlcourse network of ZOO_CASES[case] (seeded: the same weights in both processes) and its input batch"
    from dlcourse import zoo
    label, builder, kwargs, shape, _ = ZOO_CASES[case]
    model = getattr(zoo, builder)(rng=0, **kwargs).train()
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    y = rng.integers(0, 10 if 'num_classes' in kwargs else 1000, shape[0])
    return model, x, y


def conv_flop(N, C, K, H, F, S, P):
    "Multiply-adds x 2 of one forward pass of a convolution"
    O = (H - F + 2 * P) // S + 1
    return 2 * N * K * O * O * C * F * F


def lenet_data(batch, seed=0):
    "A batch of images and labels, the same in both processes"
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, batch)


def read_idx(name):
    "An IDX file of the Debian Fashion-MNIST package as a numpy array (what torchvision's reader does)"
    with gzip.open(os.path.join(FASHION, name)) as f: data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def timed(fn, n):
    "Seconds of each of n calls"
    out = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return out


def matmul_gflops(matmul, n=2048, reps=5):
    "Best GFLOP/s of an n x n x n float32 matrix product"
    best = min(timed(matmul, reps))
    return 2 * n ** 3 / best / 1e9


class Dlcourse:
    def __init__(self):
        import numba
        import dlcourse
        self.numba, self.dl, self.cache = numba, dlcourse, {}

    def info(self):
        import numba
        from threadpoolctl import threadpool_info
        blas = np.show_config(mode='dicts')['Build Dependencies']['blas']
        from dlcourse.engine.matmul import BLAS_THREADS
        kernel = next((f"{p['internal_api']} {p.get('architecture')} kernel, {p['num_threads']} threads"
                       for p in threadpool_info() if p['user_api'] == 'blas'), 'unknown')
        kernel += f", workers {BLAS_THREADS}" if BLAS_THREADS == 'quieted' else f", workers not quieted ({BLAS_THREADS})"
        x = np.ones((4, 1, 8, 8), np.float32)
        from dlcourse.conv import conv2d
        conv2d(x, np.ones((2, 1, 3, 3), np.float32))                    # start Numba's thread pool
        from dlcourse.engine.memory import MALLOC
        from dlcourse.kernels import prebuilt
        level, why = prebuilt.status()
        return dict(version=self.dl.__version__, numba=numba.__version__, numpy=np.__version__, blas=f"{blas['name']} {blas['version']}",
                    malloc=MALLOC, kernels=f'shipped, compiled for {level}' if why is None else f'compiled here ({why})',
                    blas_kernel=kernel, threads=numba.get_num_threads(), threading_layer=numba.threading_layer())

    def model(self, name, variant='lenet5()', train=True):
        from dlcourse.zoo import alexnet, lenet5
        model = lenet5(rng=0) if name == 'lenet5' else alexnet(rng=0)
        return model.train(train)

    def variant(self, fn, variant):
        "`fn` as the variant runs it: 'lenet5()' as it comes (its layers fuse where they can), 'unfused' layer by layer"
        from dlcourse.engine.fusion import fusion
        def unfused(*args):
            with fusion(False): return fn(*args)
        return unfused if variant == 'unfused' else fn

    def save_weights(self, name, path):
        np.savez(path, **self.model(name).state_dict())
        return {}

    def lenet_step(self, batch, variant):
        "A LeNet-5 training step: forward, cross-entropy, backward, SGD with momentum and weight decay"
        from dlcourse.losses import CrossEntropyLoss
        from dlcourse.optim import SGD
        model, loss_fn = self.model('lenet5', variant), CrossEntropyLoss()
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x, y = lenet_data(batch)
        state = {}
        def step():
            state['loss'] = loss_fn(model(x), y)
            opt.zero_grad()
            model.backward_params(loss_fn.backward())   # as PyTorch: no gradient for the input
            opt.step()
        return self.variant(step, variant), state

    def epoch(self, batch, variant, seed=0):
        "One epoch on the full Fashion-MNIST training set, data loading included: read, shuffle, preprocess, train"
        from dlcourse.data import DataLoader, fashion_mnist, preprocess
        from dlcourse.losses import CrossEntropyLoss
        from dlcourse.optim import SGD
        model, loss_fn = self.model('lenet5', variant), CrossEntropyLoss()
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        def run():
            t0 = time.perf_counter()
            x, y = fashion_mnist('train')
            total = n = 0
            for xb, yb in DataLoader(x, y.astype(np.int64), batch_size=batch, shuffle=True, seed=seed):
                loss = loss_fn(model(preprocess(xb)), yb)
                opt.zero_grad()
                model.backward_params(loss_fn.backward())
                opt.step()
                total, n = total + loss * len(yb), n + len(yb)
            return time.perf_counter() - t0, total / n, n
        return self.variant(run, variant)()

    def inference(self, name, batch, variant):
        model = self.model(name, variant, train=False)
        shape = (batch, 1, 28, 28) if name == 'lenet5' else (batch, 3, 227, 227)
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        return self.variant(lambda: model(x), variant)

    def conv(self, case, passes):
        from dlcourse.activations import Tanh
        from dlcourse.conv import Conv2d
        from dlcourse.core import Sequential
        from dlcourse.pool import MaxPool2d
        name, N, C, K, H, F, S, P = CONV_CASES[case]
        layer = Conv2d(C, K, F, S, P, rng=0)
        if passes.startswith('fused'):             # LeNet-5's convolution, tanh and max pooling: a Sequential fuses them
            layer = Sequential(layer, Tanh(), MaxPool2d(2, 2))
        rng = np.random.default_rng(0)
        x = rng.normal(size=(N, C, H, H)).astype(np.float32)
        y = layer(x)
        dout = rng.normal(size=y.shape).astype(np.float32)
        if passes.endswith('forward'): return lambda: layer(x)
        def both():
            layer(x)
            layer.backward(dout)
        return both

    def zoo_step(self, case, variant=None):
        "A training step of a zoo network: forward, cross-entropy, backward, SGD with momentum"
        from dlcourse.losses import CrossEntropyLoss
        from dlcourse.optim import SGD
        model, x, y = zoo_model(case)
        loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.01, momentum=0.9)
        def step():
            loss_fn(model(x), y)
            opt.zero_grad()
            model.backward_params(loss_fn.backward())
            opt.step()
        return step

    def zoo_profile(self, case, steps=3, each_conv=False):
        """Milliseconds per training step spent in each layer type (forward + backward), timed around every layer; with
        `each_conv`, in each convolution instead (`conv_label`)"""
        import collections
        from dlcourse.losses import CrossEntropyLoss
        from dlcourse.optim import SGD
        model, x, y = zoo_model(case)
        loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.01, momentum=0.9)
        spent = collections.defaultdict(float)
        def timed_method(obj, name, kind):
            f = getattr(obj, name)
            def run(*a, **k):
                t0 = time.perf_counter(); r = f(*a, **k); spent[kind] += time.perf_counter() - t0; return r
            setattr(obj, name, run)
        model(x)                                                       # the network decides its (fused) steps
        fused = [s for _, m in model.named_modules() for s in (getattr(m, '_steps', None) or ())
                 if type(s).__name__ == 'ConvActPool']
        names = {id(m): n for n, m in model.named_modules()}
        for s in fused + [m for _, m in model.named_modules() if not list(m.named_children())]:
            conv = s._layers[0] if type(s).__name__ == 'ConvActPool' else s   # a fused step: as its convolution
            if each_conv and type(conv).__name__ != 'Conv2d': continue
            kind = conv_label(names[id(conv)], conv) if each_conv else LAYER_TYPES.get(type(s).__name__, 'other')
            timed_method(s, 'forward', kind); timed_method(s, 'backward', kind)
            if hasattr(s, 'forward_relu'): timed_method(s, 'forward_relu', kind)   # batch norm with its ReLU (and a
                                                                                   # residual sum) fused: counted as batch norm
        def step():
            loss_fn(model(x), y); opt.zero_grad(); model.backward_params(loss_fn.backward()); opt.step()
        return layer_breakdown(step, spent, steps)

    def matmul(self):
        a = np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32)
        out = np.empty_like(a)
        return lambda: np.matmul(a, a, out=out)


class Torch:
    def __init__(self):
        import torch
        self.torch, self.nn = torch, torch.nn

    def info(self):
        torch = self.torch
        config = torch.__config__.show()
        backend = 'MKL' if 'USE_MKL=ON' in config or 'BLAS_INFO=mkl' in config else 'other BLAS'
        from dlcourse.engine.memory import MALLOC                      # (dlcourse builds the zoo's networks here)
        return dict(version=torch.__version__, threads=torch.get_num_threads(), blas=backend,
                    omp_wait_policy=os.environ.get('OMP_WAIT_POLICY', '(unset)'), malloc=MALLOC)

    def model(self, name, train=True, weights=None):
        "LeNet-5 or AlexNet as dlcourse.zoo builds them (same layer names), with dlcourse's weights"
        from collections import OrderedDict
        nn = self.nn
        if name == 'lenet5':
            layers = OrderedDict(c1=nn.Conv2d(1, 6, 5, padding=2), act1=nn.Tanh(), s2=nn.MaxPool2d(2, 2),
                                 c3=nn.Conv2d(6, 16, 5), act3=nn.Tanh(), s4=nn.MaxPool2d(2, 2),
                                 c5=nn.Conv2d(16, 120, 5), act5=nn.Tanh(), flatten=nn.Flatten(),
                                 f6=nn.Linear(120, 84), act6=nn.Tanh(), output=nn.Linear(84, 10))
        else:
            norm = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
            layers = OrderedDict(conv1=nn.Conv2d(3, 96, 11, stride=4), relu1=nn.ReLU(), pool1=nn.MaxPool2d(3, 2), norm1=norm(),
                                 conv2=nn.Conv2d(96, 256, 5, padding=2), relu2=nn.ReLU(), pool2=nn.MaxPool2d(3, 2), norm2=norm(),
                                 conv3=nn.Conv2d(256, 384, 3, padding=1), relu3=nn.ReLU(),
                                 conv4=nn.Conv2d(384, 384, 3, padding=1), relu4=nn.ReLU(),
                                 conv5=nn.Conv2d(384, 256, 3, padding=1), relu5=nn.ReLU(), pool3=nn.MaxPool2d(3, 2),
                                 flatten=nn.Flatten(), fc6=nn.Linear(9216, 4096), relu6=nn.ReLU(), drop6=nn.Dropout(0.5),
                                 fc7=nn.Linear(4096, 4096), relu7=nn.ReLU(), drop7=nn.Dropout(0.5), fc8=nn.Linear(4096, 1000))
        model = nn.Sequential(layers)
        if weights:
            with np.load(weights) as w: model.load_state_dict({k: self.torch.from_numpy(w[k]) for k in w.files})
        return model.train(train)

    def lenet_step(self, batch, variant, weights=None):
        torch = self.torch
        model = self.model('lenet5', weights=weights)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x, y = (torch.from_numpy(a) for a in lenet_data(batch))
        state = {}
        def step():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            state['loss'] = loss.item()
        return step, state

    def epoch(self, batch, variant, seed=0):
        "The same epoch, the PyTorch way: a TensorDataset in a DataLoader, batches normalised with tensor operations"
        torch = self.torch
        model = self.model('lenet5')
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        t0 = time.perf_counter()
        x = torch.from_numpy(read_idx('train-images-idx3-ubyte.gz').copy())
        y = torch.from_numpy(read_idx('train-labels-idx1-ubyte.gz').astype(np.int64))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        total = n = 0
        for xb, yb in loader:
            xb = ((xb.float() / 255 - MEAN) / STD).unsqueeze(1)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(yb), n + len(yb)
        return time.perf_counter() - t0, total / n, n

    def inference(self, name, batch, variant):
        torch = self.torch
        model = self.model(name, train=False)
        shape = (batch, 1, 28, 28) if name == 'lenet5' else (batch, 3, 227, 227)
        x = torch.from_numpy(np.random.default_rng(0).normal(size=shape).astype(np.float32))
        def run():
            with torch.no_grad(): model(x)
        return run

    def conv(self, case, passes):
        torch, nn = self.torch, self.nn
        name, N, C, K, H, F, S, P = CONV_CASES[case]
        layer = nn.Conv2d(C, K, F, S, P)
        if passes.startswith('fused'): layer = nn.Sequential(layer, nn.Tanh(), nn.MaxPool2d(2, 2))
        rng = np.random.default_rng(0)
        x = torch.from_numpy(rng.normal(size=(N, C, H, H)).astype(np.float32))
        with torch.no_grad(): dout = torch.from_numpy(rng.normal(size=layer(x).shape).astype(np.float32))
        xg = x.clone().requires_grad_(True)         # dlcourse's backward computes dE/dx too
        if passes.endswith('forward'):
            def forward():
                with torch.no_grad(): layer(x)
            return forward
        def both():
            xg.grad = None
            layer(xg).backward(dout)
        return both

    def zoo_model(self, case):
        "ZOO_CASES[case] as dlcourse builds it, converted with dlcourse.interop.to_torch (the same network and weights)"
        from dlcourse.interop import to_torch
        model, x, y = zoo_model(case)
        return to_torch(model).train(), self.torch.from_numpy(x), self.torch.from_numpy(y)

    def zoo_step(self, case, variant=None):
        torch = self.torch
        model, x, y = self.zoo_model(case)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        def step():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    def zoo_profile(self, case, steps=3, each_conv=False):
        """Milliseconds per training step spent in each layer type (or, with `each_conv`, in each convolution), forward
        (module hooks) and backward (backward hooks)"""
        import collections
        torch = self.torch
        model, x, y = self.zoo_model(case)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        spent, started, ended, kinds = collections.defaultdict(float), {}, {}, {}
        def start(key): started[key] = time.perf_counter()
        def end(key): ended[key] = time.perf_counter()
        for name, m in model.named_modules():
            if list(m.children()) or (each_conv and not isinstance(m, torch.nn.Conv2d)): continue
            kind = kinds[id(m)] = conv_label(name, m) if each_conv else LAYER_TYPES.get(type(m).__name__, 'other')
            def stop(key, kind=kind): spent[kind] += time.perf_counter() - started.pop(key, time.perf_counter())
            m.register_forward_pre_hook(lambda mod, inp, k=(id(m), 'f'): start(k))
            m.register_forward_hook(lambda mod, inp, out, k=(id(m), 'f'), s=stop: s(k))
            m.register_full_backward_pre_hook(lambda mod, g, k=id(m): start(k))
            m.register_full_backward_hook(lambda mod, gi, go, k=id(m): end(k))   # a backward step ends with the later of
            if isinstance(getattr(m, 'weight', None), torch.nn.Parameter):          # this and its weight's gradient: the
                m.weight.register_hook(lambda g, k=id(m): end(k))                   # first layer's hook (no input gradient)
        def step():                                                                  # fires before its weight gradient
            ended.clear()
            loss = torch.nn.functional.cross_entropy(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
            for k, t in ended.items(): spent[kinds[k]] += t - started.pop(k)
        import warnings
        warnings.filterwarnings('ignore', message='Full backward hook is firing')   # the first layer: no input gradient
        return layer_breakdown(step, spent, steps)

    def matmul(self):
        a = self.torch.from_numpy(np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32))
        out = self.torch.empty_like(a)
        return lambda: self.torch.matmul(a, a, out=out)


def serve(lib):
    "Answer requests until 'quit': setup a named callable, time blocks of calls, run epochs"
    callables, states = {}, {}
    for line in sys.stdin:
        req = json.loads(line)
        op, t0 = req.pop('op'), time.perf_counter()
        try:
            if op == 'quit': break
            elif op == 'info': ans = lib.info()
            elif op == 'save_weights': ans = lib.save_weights(**req)
            elif op == 'setup':
                key, kind = req.pop('key'), req.pop('kind')
                made = getattr(lib, kind)(**req)
                callables[key], states[key] = made if isinstance(made, tuple) else (made, {})
                for _ in range(req.get('warmup', 3)): callables[key]()
                ans = {}
            elif op == 'time':
                times = timed(callables[req['key']], req['n'])
                ans = dict(times=times, **states[req['key']])
            elif op == 'drop':
                callables.pop(req['key'], None); states.pop(req['key'], None)
                ans = {}
            elif op == 'epoch':
                seconds, loss, n = lib.epoch(**req)
                ans = dict(seconds=seconds, loss=loss, images=n)
            elif op == 'zoo_profile':
                ans = lib.zoo_profile(**req)
            elif op == 'peak':
                ans = dict(gflops=matmul_gflops(lib.matmul()))
            else: raise ValueError(f"unknown request {op!r}")
            ans['ok'] = True
        except Exception as e:                                       # report, keep serving
            ans = dict(ok=False, error=f"{type(e).__name__}: {e}")
        ans['wall'] = time.perf_counter() - t0
        print('@@ ' + json.dumps(ans), flush=True)


def rss_mb():
    "(current, peak) resident set size of this process in MiB"
    with open('/proc/self/status') as f:
        cur = next(int(l.split()[1]) for l in f if l.startswith('VmRSS:'))
    return cur / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory():
    "AlexNet forward + cross-entropy + backward at batch 8: RSS after import, after building the model, and the peak"
    x = np.random.default_rng(0).normal(size=(8, 3, 227, 227)).astype(np.float32)
    y = np.arange(8) % 1000
    if FRAMEWORK == 'torch':
        lib = Torch()
        imported = rss_mb()[0]
        model = lib.model('alexnet')
        built = rss_mb()[0]
        for _ in range(2):
            lib.torch.nn.functional.cross_entropy(model(lib.torch.from_numpy(x)), lib.torch.from_numpy(y)).backward()
    else:
        lib = Dlcourse()
        from dlcourse.losses import CrossEntropyLoss
        imported = rss_mb()[0]
        model = lib.model('alexnet')
        built = rss_mb()[0]
        loss_fn = CrossEntropyLoss()
        for _ in range(2):
            loss_fn(model(x), y)
            model.backward_params(loss_fn.backward())
    print('@@ ' + json.dumps(dict(ok=True, imported=imported, built=built, peak=rss_mb()[1])), flush=True)


def cold_start(unfused):
    "Import the library and run one LeNet-5 training step (batch 64); report seconds since this process started"
    if FRAMEWORK == 'torch':
        step, state = Torch().lenet_step(64, 'torch')
    else:
        step, state = Dlcourse().lenet_step(64, 'unfused' if unfused else 'lenet5()')
    step()
    since_start = time.time() - float(os.environ['BENCH_T0'])
    print('@@ ' + json.dumps(dict(ok=True, seconds=since_start, loss=state['loss'])), flush=True)


def cold_train(out, ahead):
    """`dlcourse train` (its defaults: LeNet-5 on the built-in sample, batch 64) until its first training step is over;
    report seconds since this process started. `ahead`: with engine.ahead's helper process (the default)"""
    import dlcourse.learner
    from dlcourse.cli import main
    from dlcourse.kernels import config
    config.COMPILE_AHEAD = ahead
    step = dlcourse.learner.Learner._step

    def first_step(self, xb, yb, train):
        result = step(self, xb, yb, train)
        if train:
            since_start = time.time() - float(os.environ['BENCH_T0'])
            print('@@ ' + json.dumps(dict(ok=True, seconds=since_start, loss=float(result[1]))), flush=True)
            os._exit(0)
        return result
    dlcourse.learner.Learner._step = first_step
    main(['train', '--epochs', '1', '--out', out])


if __name__ == '__main__':
    if '--rss' in sys.argv: peak_memory()
    elif '--cold' in sys.argv: cold_start('--unfused' in sys.argv)
    elif '--cold-train' in sys.argv: cold_train(sys.argv[sys.argv.index('--cold-train') + 1], '--no-ahead' not in sys.argv)
    else: serve(Torch() if FRAMEWORK == 'torch' else Dlcourse())
