"""Micro-batching: the requests that arrive together share one model call, run off the event loop.

One worker thread per model takes the first queued request, waits up to ``max_wait_ms`` for more
(up to ``max_batch_size`` samples, never splitting a request), runs the model once on all of them,
and resolves each request's asyncio future with its own rows. Only the worker touches the model, so
models need not be thread-safe; the event loop never waits on a forward pass.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable, Hashable, Sequence

from deepzen.serving.requests import RequestError

# run_batch(key, payloads) -> one result per payload; payloads of one batch share the key
BatchRunner = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass
class _Job:
    payload: Any
    size: int
    key: Hashable
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class MicroBatcher:
    """Runs ``run_batch`` on the payloads of concurrent requests together, in one worker thread.

    Args:
        run_batch: ``run_batch(key, payloads) -> results``, one result per payload, called by the worker
            only. Payloads with different keys (e.g. a different ``top``) go to different calls.
        max_batch_size: most samples per call.
        max_wait_ms: how long the worker waits for more requests after the first one of a batch.
        max_queue: requests waiting at most; more are refused with 503.
        on_batch: called by the worker with the samples of each batch it ran (for the metrics).
    """

    def __init__(self, run_batch: BatchRunner, max_batch_size: int = 64, max_wait_ms: float = 2.0,
                 max_queue: int = 1024, on_batch: Callable[[int], None] | None = None):
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batches = self.samples = self.requests = self.largest_batch_requests = 0
        self._held: _Job | None = None  # a request that did not fit into the previous batch
        self._worker = threading.Thread(target=self._work, name="deepzen-batcher", daemon=True)
        self._worker.start()

    async def submit(self, payload: Any, size: int = 1, key: Hashable = None) -> Any:
        """The result for ``payload`` (``size`` samples), computed in a batch by the worker."""
        loop = asyncio.get_running_loop()
        job = _Job(payload, size, key, loop.create_future(), loop)
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "The server is busy: too many queued requests. "
                               "Retry shortly") from None
        return await job.future

    def close(self) -> None:
        """Stops the worker after the requests already queued."""
        self.queue.put(None)
        self._worker.join(timeout=30)

    def _next_batch(self) -> list[_Job] | None:
        first = self._held if self._held is not None else self.queue.get()
        self._held = None
        if first is None:
            return None
        batch, size = [first], first.size
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch_size:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None or job.key != first.key or size + job.size > self.max_batch_size:
                self._held = job
                break
            batch.append(job)
            size += job.size
        return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run([job for job in batch if not job.future.cancelled()])

    def _run(self, batch: list[_Job]) -> None:
        if not batch:
            return
        try:
            results = self.run_batch(batch[0].key, [job.payload for job in batch])
        except Exception as error:  # noqa: BLE001 - the failure goes to the requests, not the worker
            if len(batch) > 1 and isinstance(error, ValueError):
                for job in batch:  # one request's bad input (an unknown user id) must not fail the others
                    self._run([job])
                return
            for job in batch:
                _resolve(job, error=error)
            return
        self.batches += 1
        self.requests += len(batch)
        self.samples += sum(job.size for job in batch)
        self.largest_batch_requests = max(self.largest_batch_requests, len(batch))
        if self.on_batch is not None:
            self.on_batch(sum(job.size for job in batch))
        for job, result in zip(batch, results):
            _resolve(job, result=result)


def _resolve(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    def settle():
        if job.future.cancelled():  # the request timed out or its client left
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the event loop is closed: nobody waits for the answer any more
        pass
