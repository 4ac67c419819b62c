"""host_heap.keep_freed_memory: a freed big block stays in the process (no munmap, no trim), off by env."""

import os
import subprocess
import sys

import pytest

# A thread (as XLA's workers do) allocates, touches and frees 512 MB; resident memory is read after.
PROBE = r"""
import sys, threading
import numpy as np
from lwop_jax.training import host_heap
applied = host_heap.keep_freed_memory()
def work():
    block = np.ones(128 * 2**20, np.float32)  # 512 MB through malloc, every page touched
    del block
thread = threading.Thread(target=work)
thread.start()
thread.join()
resident_mb = int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
print(applied, round(resident_mb))
"""


def _probe(**env):
    out = subprocess.run(
        [sys.executable, '-c', PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, **env},
    ).stdout.split()
    return out[0] == 'True', float(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc options: Linux only')
def test_freed_block_stays_resident_only_when_applied():
    applied, resident_mb = _probe()
    if not applied:
        pytest.skip('not glibc: keep_freed_memory does nothing here')
    assert resident_mb > 500, resident_mb  # the 512 MB block was kept
    applied, resident_mb = _probe(LWOP_JAX_KEEP_FREED_MEMORY='0')
    assert not applied
    assert resident_mb < 300, resident_mb  # glibc's default: unmapped on free
