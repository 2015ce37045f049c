"""verikit.threads.shared_pool: one pool per size per process, reused, and usable in a forked child."""

from __future__ import annotations

import os

from verikit.threads import shared_pool


def test_one_pool_per_size_reused():
    assert shared_pool(2) is shared_pool(2)
    assert shared_pool(3) is not shared_pool(2)
    assert sorted(shared_pool(2).map(lambda x: x * x, range(5))) == [0, 1, 4, 9, 16]


def test_a_forked_child_gets_a_pool_with_threads():
    assert shared_pool(2).submit(lambda: 1).result(timeout=60) == 1  # the parent's pool has live threads
    pid = os.fork()
    if pid == 0:  # the child: an inherited pool would have no threads and this would never finish
        try:
            code = 0 if shared_pool(2).submit(lambda: 7).result(timeout=60) == 7 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
