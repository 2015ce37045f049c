"""Thread pools kept for the life of a process, one per size, shared by verikit and its plugins.

Single-threaded work that releases the GIL (decoding a batch's images, preparing a detector's
input) runs on a few threads at once. A pool made per batch would cost a thread start per batch,
so :func:`shared_pool` makes one pool per worker count on first use and hands out that one after.
A task running on a pool must not wait on work it submits to the same pool (it could wait for
ever); verikit's users of it run one after the other from the caller's thread. A forked child (a
DataLoader worker, say) inherits the pool objects but not their threads, so it starts with none.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _forget_pools() -> None:
    global _lock
    _pools.clear()
    _lock = threading.Lock()  # the parent may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def shared_pool(workers: int) -> ThreadPoolExecutor:
    """This process's pool of ``workers`` threads (named ``verikit-pool-<workers>_<n>``)."""
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix=f"verikit-pool-{workers}")
        return pool
