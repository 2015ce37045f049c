"""Micro-batching: the images of concurrent requests go through the model in one forward pass.

Each request hands its images to :meth:`MicroBatcher.embed` and awaits its rows. One task
collects requests: it takes the first waiting one, then keeps taking more until ``max_batch``
images are gathered or ``max_wait`` seconds have passed since the first arrived, and runs the
forward on its own thread. While a forward runs, new requests queue up, so under load batches
fill without waiting at all; alone, a request waits at most ``max_wait``. ``max_batch=1`` turns
batching off (one forward per request), the baseline benchmarks/bench_serve.py compares against.
A request with more images than ``max_batch`` is run on its own, in one forward.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np


class MicroBatcher:
    def __init__(self, forward: Callable[[list[Any]], np.ndarray], *, max_batch: int = 32, max_wait: float = 0.005,
                 observe: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not max_wait >= 0:
            raise ValueError("max_wait must be >= 0 seconds")
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.observe = observe  # called with (images in the batch, seconds of forward) after each batch
        self._queue: asyncio.Queue | None = None
        self._carry: collections.deque = collections.deque()  # a request that did not fit the last batch
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="verikit-forward")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="verikit-micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def embed(self, images: Sequence[Any]) -> np.ndarray:
        """The embeddings of ``images`` (one row each), computed in a shared forward pass."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((list(images), future))
        return await future

    async def _next(self, timeout: float | None) -> tuple[list[Any], asyncio.Future] | None:
        if self._carry:
            return self._carry.popleft()
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._next(None)]
            n = len(batch[0][0])
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if n + len(item[0]) > self.max_batch:
                    self._carry.append(item)  # first in the next batch
                    break
                batch.append(item)
                n += len(item[0])
            live = [(imgs, fut) for imgs, fut in batch if not fut.done()]  # a cancelled request is dropped
            if not live:
                continue
            images = [im for imgs, _ in live for im in imgs]
            start = time.perf_counter()
            try:
                out = await loop.run_in_executor(self._executor, self.forward, images)
            except Exception as exc:  # noqa: BLE001 - every waiting request learns why its batch failed
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self.observe is not None:
                self.observe(len(images), time.perf_counter() - start)
            row = 0
            for imgs, fut in live:
                if not fut.done():
                    fut.set_result(out[row:row + len(imgs)])
                row += len(imgs)
