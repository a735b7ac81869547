"""The LitServe internals ``nasty_lightning._compat.litserve`` relies on, with requests put in LitServe's queue
by LitServe's own request handler."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import threading
import time

import litserve
import pytest
from fastapi.responses import PlainTextResponse
from litserve.callbacks.base import CallbackRunner
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError, collate_requests
from litserve.server import RegularRequestHandler
from starlette.middleware.gzip import GZipMiddleware

from nasty_lightning._compat import litserve as compat
from nasty_lightning._compat.litserve import BlockingBatchedLoop, model_workers, without_gzip


class _API(litserve.LitAPI):
    def predict(self, x):
        return x


class _Server:
    """What LitServe's request handler needs of its server to put a request in the queue."""

    def __init__(self, queue) -> None:
        self.queue, self.active_requests, self._callback_runner = queue, 0, CallbackRunner()
        self.app = type("App", (), {"response_queue_id": 3})()

    def _get_request_queue(self, api_path: str):
        return self.queue


class _Transport:
    def __init__(self) -> None:
        self.sent = []

    def send(self, item, consumer_id: int) -> None:
        self.sent.append((consumer_id, item))


@pytest.fixture(scope="module")
def manager():
    with multiprocessing.Manager() as manager:  # LitServe's request queues are a manager's
        yield manager


def _api(max_batch_size: int = 4, request_timeout=False) -> _API:
    api = _API(max_batch_size=max_batch_size)
    api.request_timeout = request_timeout  # as LitServer(timeout=...) sets it
    return api


def _submit(queue, api: _API, payloads: list) -> list[str]:
    handler = RegularRequestHandler(api, _Server(queue))
    return [asyncio.run(handler._submit_request(p))[0] for p in payloads]


def test_a_batch_is_the_requests_waiting_as_litserves_own_collects_them(manager):
    api, ours, theirs = _api(), manager.Queue(), manager.Queue()
    payloads = [{"text": f"sentence {i}"} for i in range(6)]
    uids = _submit(ours, api, payloads)
    for request in [ours.get() for _ in payloads]:
        theirs.put(request)
        ours.put(request)
    api.batch_timeout = 0
    expected = [collate_requests(litserve.loops.BatchedLoop(), api, theirs, _Transport())[0] for _ in range(2)]
    got = [BlockingBatchedLoop().get_batch_requests(api, ours, _Transport())[0] for _ in range(2)]
    assert (
        got
        == expected
        == [
            [(3, uid, p) for uid, p in zip(uids[:4], payloads[:4], strict=True)],
            [(3, uid, p) for uid, p in zip(uids[4:], payloads[4:], strict=True)],
        ]
    ), "LitServe's request tuples are no longer (response_queue_id, uid, timestamp, payload)"


def test_the_loop_blocks_until_a_request_comes_and_wakes_when_it_does(manager, monkeypatch):
    api, queue = _api(), manager.Queue()
    monkeypatch.setattr(compat, "IDLE_WAKE_SECONDS", 0.3)
    started = time.monotonic()
    assert BlockingBatchedLoop().get_batch_requests(api, queue, _Transport()) == ([], [])
    assert time.monotonic() - started >= 0.25  # waited, without polling
    monkeypatch.setattr(compat, "IDLE_WAKE_SECONDS", 30)
    threading.Timer(0.2, _submit, (queue, api, [{"text": "late"}])).start()
    started = time.monotonic()
    batch, _ = BlockingBatchedLoop().get_batch_requests(api, queue, _Transport())
    assert [p for _, _, p in batch] == [{"text": "late"}] and time.monotonic() - started < 5


def test_start_timeouts_and_the_sentinel_as_litserve_has_them(manager):
    api, queue, theirs = _api(request_timeout=0.05), manager.Queue(), manager.Queue()
    [old] = _submit(queue, api, [{"text": "old"}])
    time.sleep(0.1)
    [new] = _submit(queue, api, [{"text": "new"}])
    for request in [queue.get(), queue.get()]:
        queue.put(request)
        theirs.put(request)
    ours, litserves = BlockingBatchedLoop(), litserve.loops.BatchedLoop()
    ours._restart_workers = litserves._restart_workers = True  # else neither tells that a request started
    told, expected = _Transport(), _Transport()
    api.batch_timeout = 0
    assert collate_requests(litserves, api, theirs, expected) == ([(3, new, {"text": "new"})], [(3, old)])
    assert ours.get_batch_requests(api, queue, told) == ([(3, new, {"text": "new"})], [(3, old)])
    assert told.sent == expected.sent and [item[0] for _, item in told.sent] == [old, new]
    queue.put(_SENTINEL_VALUE)
    transport = _Transport()
    with pytest.raises(_StopLoopError):
        BlockingBatchedLoop().get_batch_requests(api, queue, transport)
    assert "_SENTINEL_VALUE" in inspect.getsource(collate_requests), "LitServe stops its loops another way"


async def _get(app, path: str) -> dict[str, str]:
    started = {}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            started.update((k.decode(), v.decode()) for k, v in message["headers"])

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"accept-encoding", b"gzip")]}
    await app({**scope, "query_string": b"", "root_path": "", "scheme": "http", "server": ("x", 80)}, receive, send)
    return started


def test_litserve_adds_gzip_and_without_gzip_takes_it_out():
    encodings = []
    for remove in (False, True):
        server = litserve.LitServer(_API(), accelerator="cpu", devices=1)
        assert any(m.cls is GZipMiddleware for m in server.app.user_middleware), "LitServe no longer adds gzip"
        if remove:
            without_gzip(server)
        server.app.add_api_route("/big", lambda: PlainTextResponse("x" * 5000))
        encodings.append(asyncio.run(_get(server.app, "/big")).get("content-encoding"))
    assert encodings == ["gzip", None], "Starlette no longer builds an app's middleware from app.user_middleware"


def test_litserve_keeps_its_worker_processes_in_inference_workers():
    server = litserve.LitServer(_API(), accelerator="cpu", devices=1)
    assert model_workers(server) == []
    run = inspect.getsource(litserve.LitServer.run)
    assert "self.inference_workers" in run and "launch_inference_worker" in run, (
        "LitServer.run no longer keeps its worker processes in inference_workers: serve cannot say why a dead "
        "worker died"
    )
