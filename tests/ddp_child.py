"""`dlcourse train` under torchrun for test_ddp.py (whose first process writes the checkpoints), which
- with $DLCOURSE_KILL_AFTER dies (SIGKILL, as a crash or an out-of-memory kill would) right after writing the checkpoint
  of that epoch;
- says "atexit ran in process RANK" on stderr if the interpreter's shutdown runs (it should not: cli._leave)."""
import atexit
import os
import signal
import sys

from dlcourse.cli import main
from dlcourse.learner import Learner

if 'DLCOURSE_KILL_AFTER' in os.environ:
    _save, _after = Learner.save, int(os.environ['DLCOURSE_KILL_AFTER'])

    def save_then_die(self, path):
        written = _save(self, path)
        if self.epoch == _after: os.kill(os.getpid(), signal.SIGKILL)
        return written

    Learner.save = save_then_die
atexit.register(lambda: print(f"atexit ran in process {os.environ.get('RANK')}", file=sys.stderr, flush=True))
sys.exit(main(sys.argv[1:]))
