"""`dlcourse train` that dies (SIGKILL, as a crash or an out-of-memory kill would) right after writing the checkpoint of
epoch $DLCOURSE_KILL_AFTER: run under torchrun by test_ddp.py, whose first process writes the checkpoints."""
import os
import signal
import sys

from dlcourse.cli import main
from dlcourse.learner import Learner

_save, _after = Learner.save, int(os.environ['DLCOURSE_KILL_AFTER'])

def save_then_die(self, path):
    written = _save(self, path)
    if self.epoch == _after: os.kill(os.getpid(), signal.SIGKILL)
    return written

Learner.save = save_then_die
sys.exit(main(sys.argv[1:]))
