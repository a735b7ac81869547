"""LitServe internals (checked on LitServe 0.2.19; ``pyproject.toml`` keeps it below 0.3).

``tests/_compat/test_litserve.py`` fails, naming the internal, when a release changes one of them.
"""

from __future__ import annotations

import time
from multiprocessing.process import BaseProcess
from queue import Empty, Queue
from typing import Any

import litserve
from litserve.loops import BatchedLoop
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.utils import LitAPIStatus, LoopResponseType
from starlette.middleware.gzip import GZipMiddleware

IDLE_WAKE_SECONDS = 1.0  # how often an idle worker looks up from its queue (LitServe's SingleLoop does the same)


class BlockingBatchedLoop(BatchedLoop):
    """LitServe's batched loop, waiting for requests without polling: it blocks until a request comes, then
    takes the others already waiting (up to ``max_batch_size``) without waiting for more.

    LitServe's own collects a batch by polling its queue: without pause at ``batch_timeout=0`` (most of a core
    while idle), or every millisecond otherwise (an eighth of a core, and a millisecond or more added to each
    request). This overrides the public ``get_batch_requests``, but reads LitServe's request tuples
    ``(response_queue_id, uid, timestamp, payload)``, stops on its private ``_SENTINEL_VALUE`` with its private
    ``_StopLoopError``, and tells the HTTP side that a request started as ``collate_requests`` does (0.2.x).
    Pass it as ``LitAPI(loop=...)``, LitServe's public way.
    """

    def get_batch_requests(self, lit_api: litserve.LitAPI, request_queue: Queue, transport: Any) -> tuple[list, list]:
        batch: list[tuple[Any, str, Any]] = []
        timed_out: list[tuple[Any, str]] = []
        timeout = lit_api.request_timeout if lit_api.request_timeout not in (-1, False) else None
        while len(batch) < lit_api.max_batch_size:
            try:
                request = (
                    request_queue.get_nowait() if batch or timed_out else request_queue.get(timeout=IDLE_WAKE_SECONDS)
                )
            except Empty:
                break
            if request == _SENTINEL_VALUE:
                raise _StopLoopError()
            response_queue_id, uid, timestamp, payload = request
            self.put_response(transport, response_queue_id, uid, (), LitAPIStatus.START, LoopResponseType.REGULAR)
            if timeout is not None and time.monotonic() - timestamp > timeout:
                timed_out.append((response_queue_id, uid))
            else:
                batch.append((response_queue_id, uid, payload))
        return batch, timed_out


def without_gzip(server: litserve.LitServer) -> None:
    """Take out the gzip middleware that LitServe adds to every server that does not stream (0.2.x, with no
    option to leave it out), before the server starts.

    Starlette builds an app's middleware from its ``user_middleware`` list when the app first runs; the attribute
    has no underscore but no documented way to remove an entry either.
    """
    server.app.user_middleware = [m for m in server.app.user_middleware if m.cls is not GZipMiddleware]


def model_workers(server: litserve.LitServer) -> list[BaseProcess]:
    """The inference worker processes ``server.run`` started (none before it started them).

    LitServe keeps them in the undocumented ``inference_workers`` attribute (0.2.x), set in ``run``.
    """
    return list(getattr(server, "inference_workers", []))
