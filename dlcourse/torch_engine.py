"""The torch engine of `dlcourse train`: the course's model, moved to PyTorch with `to_torch`, trained there (on the CPU, a
GPU, or several processes with DistributedDataParallel), and written back with `from_torch` into the course's checkpoints,
so that either engine resumes the other's run and the zoo and the lessons read its weights."""
import importlib
import os
import sys
import time

import numpy as np

from dlcourse.core import check_choice, check_positive
from dlcourse.interop import from_torch, to_torch
from dlcourse.learner import TrainingDiverged, _format_record, _nonfinite, _progress_bar
from dlcourse.optim import Adam, SGD

INSTALL = 'pip install "dlcourse[torch]"'

def _torch():
    "PyTorch, or an ImportError that says in one line how to install it"
    try: return importlib.import_module('torch')
    except ImportError: raise ImportError(f"--engine torch needs PyTorch, which is not installed: {INSTALL}") from None

class Context:
    "Where the torch engine runs: the device, this process's rank and the number of processes (world)"
    def __init__(self, device, rank, world): self.device, self.rank, self.world = device, rank, world
    def engine(self, learner): return Engine(learner, self)

def start(device=None,  # 'cpu', 'cuda' or None (cuda if there is a GPU)
          world=1):     # processes started by torchrun (its WORLD_SIZE); more than 1 joins their process group
    "PyTorch and, for several processes, the process group (NCCL on GPUs, gloo on the CPU); returns the Context"
    if device is not None: check_choice(device, 'device', ('cpu', 'cuda'))
    world = check_positive(world, 'world', integer=True)
    torch = _torch()
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch finds no GPU here (torch.cuda.is_available() is False); use --device cpu")
    device, rank = device or ('cuda' if torch.cuda.is_available() else 'cpu'), 0
    if world > 1:
        dist = torch.distributed
        if device == 'cuda':
            local = int(os.environ.get('LOCAL_RANK', '0'))
            torch.cuda.set_device(local)
            device = f'cuda:{local}'
        if not dist.is_initialized(): dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo')
        if dist.get_world_size() != world: raise ValueError(f"the process group has {dist.get_world_size()} processes, not {world}")
        rank = dist.get_rank()
    return Context(device, rank, world)

left_group = False     # has this process left a process group (stop)? The command then ends with os._exit (cli._leave)

def stop():
    "Leave the process group, if this process joined one"
    global left_group
    torch = sys.modules.get('torch')
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        left_group = True

def _torch_optimizer(torch, ours, params):
    "The PyTorch optimiser with the hyper-parameters and the state of the course's `ours`, for the torch `params`"
    h = ours.hyper
    if isinstance(ours, Adam):
        opt = torch.optim.Adam(params, lr=h['lr'], betas=(h['beta1'], h['beta2']), eps=h['eps'], weight_decay=h['weight_decay'])
    elif isinstance(ours, SGD):
        opt = torch.optim.SGD(params, lr=h['lr'], momentum=h['momentum'], dampening=h['dampening'],
                              weight_decay=h['weight_decay'], nesterov=h['nesterov'])
    else: raise TypeError(f"the torch engine trains with SGD or Adam, not {type(ours).__name__}")
    for i, s in ours.state.items():
        p = params[i]
        opt.state[p] = {k: torch.from_numpy(np.array(v)).to(p.device) for k, v in s.items()}
        if isinstance(ours, Adam): opt.state[p]['step'] = torch.tensor(float(h['step']))
    return opt

class Engine:
    "Trains the model of a Learner with PyTorch; after every epoch the Learner holds the weights, state and record, as its own fit"
    def __init__(self, learner, ctx):
        torch = self.torch = _torch()
        self.learner, self.ctx = learner, ctx
        torch.manual_seed(learner.info.get('seed', 0) + learner.epoch)          # dropout's masks
        self.module = to_torch(learner.model).to(ctx.device)
        self.params = [self.module.get_parameter(name) for name, _ in learner.model.named_parameters()]
        self.opt = _torch_optimizer(torch, learner.optimizer, self.params)
        self.net = self.module
        if ctx.world > 1:
            cuda = ctx.device.startswith('cuda')
            self.net = torch.nn.parallel.DistributedDataParallel(self.module, device_ids=[torch.device(ctx.device).index] if cuda else None)

    def _pass(self, dl, train, bar=None):
        "One pass over the batches of `dl` (this process's share), training or evaluating; the mean loss and accuracy over all processes"
        torch, F, L = self.torch, self.torch.nn.functional, self.learner
        model = self.net if train else self.module
        model.train(train)
        totals = torch.zeros(3, dtype=torch.float64, device=self.ctx.device)      # loss sum, correct, examples
        with torch.set_grad_enabled(train):
            for L.batch, (xb, yb) in enumerate(dl, 1):
                x, y = torch.from_numpy(xb).to(self.ctx.device), torch.from_numpy(yb).to(self.ctx.device)
                out = model(x)
                loss_sum = F.cross_entropy(out, y, reduction='sum')
                L.loss = loss = loss_sum.item() / max(len(xb), 1)
                if not np.isfinite(loss):
                    what = f"epoch {L.epoch + 1}, batch {L.batch}" + ('' if train else ' (validation)')
                    raise TrainingDiverged(f"the loss became {loss} in {what}: training diverged. Try a lower learning rate "
                                           f"(now {L.optimizer.lr}), and check the data for NaN or inf if it happens in the first batches.")
                if train:
                    # DistributedDataParallel averages the processes' gradients: scaled by world / (examples of the global
                    # batch), each process's sum gives the gradient of the global batch's mean loss, as one process would
                    self.opt.zero_grad()
                    (loss_sum * (self.ctx.world / dl.global_batch)).backward()
                    self.opt.step()
                    if bar is not None: bar.update(1); bar.set_postfix(epoch=L.epoch + 1, loss=f"{loss:.4f}")
                totals += torch.stack([loss_sum.detach().double(), (out.argmax(1) == y).sum().double(),
                                       torch.tensor(float(len(xb)), dtype=torch.float64, device=self.ctx.device)])
        if self.ctx.world > 1: torch.distributed.all_reduce(totals)
        loss_sum, correct, n = totals.tolist()
        if n == 0: raise ValueError("the data loader yielded no examples: there is nothing to train on or evaluate")
        return {'loss': loss_sum / n, 'accuracy': correct / n}

    def _sync(self):
        "Copy the weights, buffers and optimiser state from PyTorch into the Learner's model and optimiser"
        torch, L = self.torch, self.learner
        for name, v in self.module.state_dict().items():
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise TrainingDiverged(f"{name} became NaN or infinite in epoch {L.epoch + 1}: training diverged. "
                                       f"Try a lower learning rate (now {L.optimizer.lr}).")
        self.module.train()
        from_torch(self.module, model=L.model)
        ours = L.optimizer
        ours.state = {i: {k: v.detach().cpu().numpy().copy() for k, v in self.opt.state[p].items() if k != 'step'}
                      for i, p in enumerate(self.params) if self.opt.state.get(p)}
        if isinstance(ours, Adam) and self.opt.state.get(self.params[0]):
            ours.hyper['step'] = int(self.opt.state[self.params[0]]['step'])

    def fit(self, epochs,          # epochs to train, from the Learner's epoch on
            checkpoint=None,       # the Learner saves its checkpoint here after every epoch (None: this process writes none)
            progress=True):        # a progress bar on stderr if it is a terminal
        "Train `epochs` epochs; each is recorded, logged, checkpointed and followed by the Learner's on_epoch_end hooks"
        L = self.learner
        bar = _progress_bar(len(L.train_dl) * epochs) if progress else None
        try:
            for _ in range(epochs):
                for group in self.opt.param_groups: group['lr'] = L.optimizer.lr          # the schedule's, if any
                start, record = time.perf_counter(), {'epoch': L.epoch + 1}
                record.update({f'train_{k}': v for k, v in self._pass(L.train_dl, True, bar).items()})
                self._sync()
                bad = _nonfinite(L.model, L.optimizer)
                if bad: raise TrainingDiverged(f"{bad} became NaN or infinite in epoch {L.epoch + 1}: training diverged.")
                if L.valid_dl is not None: record.update({f'valid_{k}': v for k, v in self._pass(L.valid_dl, False).items()})
                record['time'] = round(time.perf_counter() - start, 2)
                L.epoch += 1; L.history.append(record)
                if checkpoint is not None: L.save(checkpoint)
                for f in L.on_epoch_end: f(L)
                (bar.write if bar is not None else print)(_format_record(record))
        except TrainingDiverged as e: raise TrainingDiverged(f"{e} {L._checkpoint_note(checkpoint)}".strip()) from None
        finally:
            if bar is not None: bar.close()
        return L.history

    def evaluate(self, dl):
        "Mean loss and accuracy of the model on the batches of `dl` (over all processes), without training"
        try: return self._pass(dl, False)
        finally: self.module.train()
