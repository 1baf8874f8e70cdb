"""Memory for the training loop: glibc's allocator told to keep what a step frees for the next step, instead of handing it
back to the operating system and taking it again page by page (`keep_freed_memory`, called when the engine is imported)."""
import ctypes
import os
import platform

from ..kernels import config

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3          # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20                        # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit machines


def keep_freed_memory(keep=None):  # bytes of freed memory the allocator may keep; None: the environment's, else config's
    """Set glibc's `M_MMAP_THRESHOLD` to its ceiling (32 MB) and `M_TRIM_THRESHOLD` to `keep`, so that the activations
    and gradients a training step frees go back to the allocator's heap and the next step's arrays come from there.
    glibc's default instead maps arrays of more than 128 KB from the system afresh and returns freed memory at the heap's
    top: the next step then faults on every new page (the small ResNet-18 at batch 128: about 3,000 page faults and a
    quarter of the step). The process's peak memory stays the same; what it holds between steps may not shrink.
    Without `keep`, the environment variable DLCOURSE_KEEP_FREED_MEMORY decides where it is set (0: leave the allocator
    as it is, as the benchmark does for PyTorch's process), else `config.KEEP_FREED_MEMORY`.
    Returns what happened, for the record: 'kept', or why not ('off' where `keep` is 0, 'not glibc', 'refused')."""
    if keep is None:
        keep = os.environ.get('DLCOURSE_KEEP_FREED_MEMORY', config.KEEP_FREED_MEMORY)
        try: keep = int(keep)
        except ValueError: raise ValueError(f"DLCOURSE_KEEP_FREED_MEMORY must be a number of bytes, not {keep!r}") from None
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep < 2**31:
        raise ValueError(f"keep must be a number of bytes from 0 to 2**31 - 1 (an int of glibc's), not {keep!r}")
    if keep == 0: return 'off'
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc': return 'not glibc'
    try: mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError): return 'not glibc'
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and mallopt(M_TRIM_THRESHOLD, keep)   # 1 on success
    return 'kept' if ok else 'refused'


MALLOC = keep_freed_memory()   # what importing dlcourse did to the allocator (bench/ records it)
