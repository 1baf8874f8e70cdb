"""Importing dlcourse tells glibc's allocator to keep the memory a training step frees for the next step
(engine.memory.keep_freed_memory), instead of returning it to the system and faulting on every page of the next step's
arrays. Each case runs in a fresh interpreter (the setting is the process's) and counts the page faults of a step-like
pattern: arrays of a few MB allocated, written and all freed, again and again."""
import json
import os
import platform
import subprocess
import sys

import pytest

from dlcourse.engine import memory

PROBE = r'''
import json, resource, sys
import numpy as np
if sys.argv[1] == 'dlcourse':
    from dlcourse.engine import memory
    state = memory.MALLOC
else:
    state = 'numpy only'
def step():                                       # 24 arrays of 3 MB (a small ResNet-18's activations), all freed
    arrays = [np.empty(3 << 20, np.uint8) for _ in range(24)]
    for a in arrays: a[::4096] = 1                # touch every page
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5): step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps(dict(state=state, faults=faults, pages=5 * 24 * (3 << 20) // 4096)))
'''


def probe(who, **env):
    "Run PROBE in a fresh interpreter; its JSON answer"
    base = {k: v for k, v in os.environ.items() if k not in ('DLCOURSE_KEEP_FREED_MEMORY', 'GLIBC_TUNABLES')}
    out = subprocess.run([sys.executable, '-c', PROBE, who], env={**base, **env}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'


def test_importing_dlcourse_keeps_freed_memory():
    """With dlcourse imported, the repeated steps take their arrays from memory the process already has (almost no page
    faults); with the variable at 0, or NumPy alone, glibc returns it and faults on most pages again. (With another C
    library than glibc, the import leaves the allocator alone and says so.)"""
    if not GLIBC:
        assert memory.MALLOC == 'not glibc'
        return
    kept = probe('dlcourse')
    assert kept['state'] == 'kept'
    assert kept['faults'] < 0.05 * kept['pages'], kept
    for off in (probe('dlcourse', DLCOURSE_KEEP_FREED_MEMORY='0'), probe('numpy')):
        assert off['state'] in ('off', 'numpy only')
        assert off['faults'] > 0.5 * off['pages'], off                 # the pattern does fault without the setting


def test_off_and_bad_values():
    "0 leaves the allocator alone; a value that is not a byte count is refused with the argument's name"
    assert memory.keep_freed_memory(0) == 'off'
    for bad in (-1, 2**31, True, 1.5, '1'):
        with pytest.raises(ValueError, match='keep must be a number of bytes'):
            memory.keep_freed_memory(bad)


def test_a_bad_variable_is_named():
    "DLCOURSE_KEEP_FREED_MEMORY that is not a number stops the import with a message naming the variable"
    base = {k: v for k, v in os.environ.items() if k != 'DLCOURSE_KEEP_FREED_MEMORY'}
    out = subprocess.run([sys.executable, '-c', 'import dlcourse'], env={**base, 'DLCOURSE_KEEP_FREED_MEMORY': 'lots'},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "DLCOURSE_KEEP_FREED_MEMORY must be a number of bytes, not 'lots'" in out.stderr
