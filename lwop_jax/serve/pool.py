"""A bounded pool of inference workers for an asyncio server.

N worker threads each own one PoseEstimator (its own runtime session: nothing is shared between
inferences that run at the same time); ONNX Runtime, OpenVINO and OpenCV release the GIL, so threads run in
parallel. At most N jobs run and ``max_queue`` wait; a job beyond that is refused at once
(:class:`PoolFull`, the service's 503) instead of waiting in an ever longer queue. A job counts against
the bound until a worker has finished it (or dropped it: its caller went away first), so a client that
disconnects cannot let more jobs in than the bound allows. Admission and release happen on the event
loop's thread only; the workers hand their outcomes back through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from lwop_jax.errors import LwopError

logger = logging.getLogger(__name__)


class PoolFull(LwopError):
    """Every worker is busy and the queue is full."""


class InferencePool:
    def __init__(self, estimators: Sequence, max_queue: int):
        if not estimators:
            raise ValueError('an inference pool needs at least one worker')
        self.workers = len(estimators)
        self.capacity = self.workers + max(0, int(max_queue))
        self.admitted = 0  # running + waiting; changed on the event loop's thread only
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, args=(estimator,), name=f'lwop-serve-worker-{i}', daemon=True)
            for i, estimator in enumerate(estimators)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Jobs queued for a worker (approximate while workers take jobs)."""
        return self._jobs.qsize()

    async def run(self, function: Callable[..., Any], *args) -> Any:
        """``function(estimator, *args)`` on a free worker's estimator; its result, or its exception raised
        here. PoolFull at once when the workers and the queue are full."""
        if self.admitted >= self.capacity:
            raise PoolFull(f'{self.workers} workers busy and {self.capacity - self.workers} requests waiting')
        self.admitted += 1
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((function, args, future, loop))
        return await future

    def close(self, timeout: float = 10.0) -> None:
        """Lets the workers finish the jobs they hold and stop (the queue is empty once the server drained)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)

    # -- the worker threads --------------------------------------------------------------------

    def _work(self, estimator) -> None:
        while (job := self._jobs.get()) is not None:
            function, args, future, loop = job
            result, error = None, None
            if not future.cancelled():  # its caller is gone: skip the work, only release the slot
                try:
                    result = function(estimator, *args)
                except BaseException as exc:  # handed to the awaiting coroutine, which decides
                    error = exc
            try:
                loop.call_soon_threadsafe(self._settle, future, result, error)
            except RuntimeError:  # the loop is closed: the server stopped, nobody waits for this
                logger.debug('result dropped: the event loop is closed')

    def _settle(self, future: asyncio.Future, result, error) -> None:
        self.admitted -= 1
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
