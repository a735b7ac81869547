"""``nasty-train serve``: a tagging service over HTTP, built on LitServe (Lightning's serving library).

LitServe runs the model in a worker process and batches requests that arrive together: each request is
validated where it arrives (a bad one gets 422 with the reason, and never reaches the batch of others),
then the worker tags every sentence of the requests it has collected in one ``Tagger.predict`` call.
The worker takes what is waiting and never waits for more (``GreedyBatches``), so a lone client pays
nothing for batching; under load, what queues while the model runs becomes the next batch.

No ``from __future__ import annotations`` here: LitServe reads the annotation of ``decode_request``'s
argument as the request schema, and FastAPI needs it as a class, not a string.
"""

import asyncio
import functools
import json
import logging
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import time
from queue import Empty
from typing import Any, Literal

import litserve
import litserve.server as litserve_server
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError, collate_requests
from litserve.loops.simple_loops import BatchedLoop
from litserve.server import RegularRequestHandler
from litserve.transport.base import MessageTransport
from litserve.utils import LitAPIStatus, LoopResponseType, PickleableHTTPException
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError, model_validator
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_SENTENCES = 256  # per request: a larger list gets 422, so no client can hold the worker for minutes
MAX_WORDS = 2000  # per sentence, after splitting text
MAX_BODY_BYTES = 16 * 2**20  # a larger body gets 413; the largest request of words above is about 13 MB of JSON


class SentenceIn(BaseModel):
    """One sentence: running ``text`` (split into words as ``Tagger.tag`` splits it) or pre-split ``words``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = None
    words: list[str] | None = None

    @model_validator(mode="after")
    def _one_sentence(self) -> "SentenceIn":
        from nasty_lightning.inference import split_words

        if (self.text is None) == (self.words is None):
            raise ValueError("give either 'text' or 'words'")
        if self.words is not None and any(not w or len(w.split()) != 1 or w != w.strip() for w in self.words):
            raise ValueError("every word must be a non-empty string without spaces")
        n = len(self.words if self.words is not None else split_words(self.text))
        if n == 0:
            raise ValueError("the sentence has no word")
        if n > MAX_WORDS:
            raise ValueError(f"the sentence has {n} words, more than {MAX_WORDS}")
        return self


class TagRequest(RootModel[Any]):
    """A sentence (``SentenceIn``), or a list of 1 to ``MAX_SENTENCES`` of them. Validated here, in one step,
    so a bad request gets one message (a union type would report every way it failed to match)."""

    @model_validator(mode="after")
    def _sentences(self) -> "TagRequest":
        if isinstance(self.root, bytes):  # FastAPI's reading of a body sent without a JSON content type
            raise ValueError("send the body as JSON, with the header Content-Type: application/json")
        many = isinstance(self.root, list)
        if many and not 0 < len(self.root) <= MAX_SENTENCES:
            raise ValueError(f"give from 1 to {MAX_SENTENCES} sentences, not {len(self.root)}")
        items = self.root if many else [self.root]
        sentences = []
        for n, item in enumerate(items):
            where = f"sentence {n + 1}: " if many else ""
            if not isinstance(item, dict):
                raise ValueError(f"{where}expected an object with 'text' or 'words', got {type(item).__name__}")
            try:
                sentences.append(SentenceIn.model_validate(item))
            except ValidationError as err:
                first = err.errors()[0]
                field = ".".join(str(x) for x in first["loc"])
                raise ValueError(
                    f"{where}{field + ': ' if field else ''}{first['msg'].removeprefix('Value error, ')}"
                ) from None
        self.root = sentences if many else sentences[0]
        return self

    def __repr__(self) -> str:
        """Short, without the text: LitServe formats every request into a debug message, logged or not."""
        return f"TagRequest({len(self.root) if isinstance(self.root, list) else 1} sentences)"

    __str__ = __repr__


async def _validation_error(request: Any, err: RequestValidationError) -> JSONResponse:
    """One line for a bad request: the reason, without echoing its body back."""
    first = err.errors()[0] if err.errors() else {"msg": "invalid request"}
    message = "the body is not valid JSON" if first.get("type") == "json_invalid" else first["msg"]
    return JSONResponse(status_code=422, content={"detail": message.removeprefix("Value error, ")})


class GreedyBatches(BatchedLoop):
    """LitServe's batched loop, but it waits for the first request without polling and then takes what else
    is waiting, up to ``max_batch_size``, without waiting for more.

    LitServe's own collection either polls the queue (``batch_timeout`` 0: on an idle server, a busy loop
    that kept the worker and LitServe's queue manager at about half a core each) or waits up to
    ``batch_timeout`` after the first request (latency for a lone client). Relies on LitServe's internal
    ``collate_requests`` (hence the pinned LitServe version in pyproject.toml).

    Each batch then goes through ``TaggingAPI`` as in LitServe's ``run_batched_loop``, with the same answers
    and errors, but without its per-call signature inspection (for a ``context`` argument no method here
    takes), debug messages and callbacks (``serve`` sets none): about 0.25 ms a batch on our CPU.
    """

    def run_batched_loop(
        self, lit_api: litserve.LitAPI, request_queue: Any, transport: Any, callback_runner: Any, lit_spec: Any = None
    ) -> None:
        while True:
            try:
                batch, timed_out = self.get_batch_requests(lit_api, request_queue, transport)
            except _StopLoopError:
                return
            for response_queue_id, uid in timed_out:
                late = HTTPException(504, "Request timed out")
                self.put_response(transport, response_queue_id, uid, late, LitAPIStatus.ERROR, LoopResponseType.REGULAR)
            if not batch:
                continue
            try:
                inputs = lit_api.batch([lit_api.decode_request(payload) for _, _, payload in batch])
                answers = [lit_api.encode_response(y) for y in lit_api.unbatch(lit_api.predict(inputs))]
            except HTTPException as err:
                failed = PickleableHTTPException.from_exception(err)
                for response_queue_id, uid, _ in batch:
                    self.put_response(
                        transport, response_queue_id, uid, failed, LitAPIStatus.ERROR, LoopResponseType.REGULAR
                    )
            except Exception as err:
                logging.getLogger(__name__).exception("tagging a batch of %d requests failed", len(batch))
                for response_queue_id, uid, _ in batch:
                    self.put_error_response(transport, response_queue_id, uid, err, LoopResponseType.REGULAR)
            else:
                for (response_queue_id, uid, _), answer in zip(batch, answers, strict=True):
                    self.put_response(
                        transport, response_queue_id, uid, answer, LitAPIStatus.OK, LoopResponseType.REGULAR
                    )

    def get_batch_requests(self, lit_api: litserve.LitAPI, request_queue: Any, transport: Any) -> tuple[list, list]:
        try:
            first = request_queue.get(timeout=1.0)
        except Empty:
            return [], []
        if first == _SENTINEL_VALUE:
            raise _StopLoopError()
        response_queue_id, uid, timestamp, payload = first
        self.put_response(
            transport=transport,
            response_queue_id=response_queue_id,
            uid=uid,
            response_data=(),
            status=LitAPIStatus.START,
            response_type=LoopResponseType.REGULAR,
        )
        lit_api.max_batch_size -= 1  # room for the first; batch_timeout is 0, so this takes only what waits
        try:
            rest, timed_out = collate_requests(self, lit_api, request_queue, transport)
        finally:
            lit_api.max_batch_size += 1
        if lit_api.request_timeout not in (-1, False) and time.monotonic() - timestamp > lit_api.request_timeout:
            return rest, [(response_queue_id, uid), *timed_out]  # as collate_requests does with the others
        return [(response_queue_id, uid, payload), *rest], timed_out


class PipeTransport(MessageTransport):
    """Answers from the worker to the HTTP server through one pipe per HTTP server process.

    LitServe's fast transport sends every answer through ZeroMQ and a broker process (more processes' and
    I/O threads' wake-ups); its other one reads a manager queue from a thread. Here the worker (one process,
    one thread) writes the pickled answer to a pipe with ``Connection.send``, and the HTTP server's event
    loop reads it as it arrives, without blocking: an answer larger than the pipe's buffer comes in pieces.
    (Reading it with ``Connection.recv`` once the pipe was readable failed there under uvloop, whose
    ``add_reader`` makes the pipe non-blocking, and that error stopped LitServe's reading of answers.)
    """

    def __init__(self, consumers: int) -> None:
        pipes = [multiprocessing.get_context("spawn").Pipe(duplex=False) for _ in range(consumers)]
        self._readers = [r for r, _ in pipes]
        self._writers = [w for _, w in pipes]
        for reader in self._readers:
            os.set_blocking(reader.fileno(), False)
        self._closed = False

    def send(self, item: Any, consumer_id: int) -> None:
        self._writers[consumer_id].send(item)

    async def areceive(self, consumer_id: int, timeout: float | None = None) -> Any:
        """The next answer for this HTTP server, or None after ``timeout`` (at most 1 s) without one."""
        if self._closed:
            raise asyncio.CancelledError("transport closed")
        fd = self._readers[consumer_id].fileno()
        try:
            header = os.read(fd, 4)
        except BlockingIOError:
            if not await _readable(fd, 1.0 if timeout is None else min(timeout, 1.0)):
                return None
            header = b""
        header += await _read_exactly(fd, 4 - len(header))
        (size,) = struct.unpack("!i", header)
        if size == -1:  # Connection.send's header for a message of 2 GiB or more
            (size,) = struct.unpack("!Q", await _read_exactly(fd, 8))
        return pickle.loads(await _read_exactly(fd, size))

    def close(self, send_sentinel: bool = True) -> None:
        self._closed = True


async def _readable(fd: int, timeout: float | None = None) -> bool:
    """Wait until the non-blocking ``fd`` has something to read; False after ``timeout`` seconds without."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
    except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on, not before
        return False
    finally:
        loop.remove_reader(fd)
    return True


async def _read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from the non-blocking ``fd``, waiting on the event loop whenever none is there yet."""
    chunks = []
    while size:
        try:
            chunk = os.read(fd, min(size, 2**20))
        except BlockingIOError:
            await _readable(fd)
            continue
        if not chunk:
            raise EOFError("the worker closed its answer pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class FastPredict:
    """ASGI middleware: a ``POST /predict`` whose JSON body validates goes straight to LitServe's request
    handler (the same queue, response buffer and error mapping), and the worker's answer straight out.

    It passes by FastAPI's routing, dependency solving, request and response objects and exception layers:
    on our 2-core CPU (AVX2), MiniLM, one sentence a request, the HTTP process's CPU time fell from 1.67-1.85
    to 1.38-1.47 ms a request (README, Serving). Everything else goes to the FastAPI app as it came, the body
    replayed: other paths and methods, another content type, a body that fails validation (so a bad request
    gets FastAPI's 422 and its message, as before). ``PipeServer`` installs it inside LitServe's body-size
    limit, and only where requests are not authenticated.
    """

    def __init__(self, app: ASGIApp, server: litserve.LitServer) -> None:
        self.app = app
        self.lit_api = next(iter(server.litapi_connector))
        self.handler = RegularRequestHandler(self.lit_api, server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.lit_api.api_path
            or not dict(scope["headers"]).get(b"content-type", b"").startswith(b"application/json")
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        try:
            while not messages or (messages[-1]["type"] == "http.request" and messages[-1].get("more_body")):
                messages.append(await receive())
        except HTTPException as err:  # LitServe's limit on the body's size
            await _error_response(err)(scope, receive, send)
            return
        try:
            request = TagRequest.model_validate_json(b"".join(m.get("body", b"") for m in messages))
        except ValidationError:
            request = None
        if request is None:

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        try:
            response = await self.handler.handle_request(request, TagRequest)
        except HTTPException as err:  # as LitServe's handler maps the worker's errors
            response = _error_response(err)
        await response(scope, receive, send)


def _error_response(err: HTTPException) -> JSONResponse:
    """What FastAPI answers for an ``HTTPException``."""
    return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)


async def _no_auth() -> None:
    """No authentication (LitServe's ``LIT_SERVER_API_KEY`` unset)."""


class PipeServer(litserve.LitServer):
    """LitServe with shorter paths between its HTTP server process and the worker (README, Serving).

    - Requests: LitServe's queue is a ``multiprocessing.Manager`` queue, so every request's put and get is a
      round trip through the manager process; a ``multiprocessing.Queue`` carries the same tuples over a
      pipe. Its put never blocks (a thread writes), so a large request cannot stall the event loop while
      the worker writes a large answer.
    - Answers: ``PipeTransport``.
    - No authentication is a coroutine (see ``setup_auth``).
    - Answers are not compressed (see ``_register_middleware``).
    - Without authentication, ``FastPredict`` takes well-formed requests past FastAPI's layers.

    The HTTP server is forked from this process and the worker is spawned with the queue and the transport as
    arguments, the two ways such objects may be handed over. Relies on LitServe's internal ``_init_manager``
    and ``_register_middleware`` (hence the pinned LitServe version in pyproject.toml).
    """

    def _register_middleware(self) -> None:
        """LitServe's middlewares but gzip, which every request passed through: answers are a few kilobytes
        of JSON for loopback or a local network (a reverse proxy can compress for slow links)."""
        self.middlewares = [m for m in self.middlewares if (m[0] if isinstance(m, tuple) else m) is not GZipMiddleware]
        if self.setup_auth() is _no_auth:  # first in the list: the innermost of these middlewares
            self.middlewares.insert(0, (FastPredict, {"server": self}))
        super()._register_middleware()

    def setup_auth(self, lit_api: litserve.LitAPI | None = None) -> Any:
        """LitServe's authentication, except that "none" is a coroutine: FastAPI runs a plain function
        dependency in a thread pool, a hand-over to another thread and back on every request."""
        auth = super().setup_auth(lit_api)
        return _no_auth if auth is litserve_server.no_auth else auth

    def _init_manager(self, num_api_servers: int) -> Any:
        manager = super()._init_manager(num_api_servers)
        for path in self.litapi_request_queues:
            self.litapi_request_queues[path] = multiprocessing.get_context("spawn").Queue()
        self._transport = PipeTransport(num_api_servers)
        return manager


class TaggingAPI(litserve.LitAPI):
    """Tags the sentences of every request of a batch with one ``Tagger.predict``."""

    def __init__(
        self, model_dir: str, batch_size: int, threads: int, max_batch_size: int, precision: str = "float32"
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=0.0, loop=GreedyBatches())
        self.model_dir, self.batch_size, self.threads, self.precision = model_dir, batch_size, threads, precision
        self.serve_pid = os.getpid()

    def setup(self, device: str) -> None:
        from nasty_lightning.inference import Tagger, use_threads

        _stop_with(self.serve_pid)
        use_threads(self.threads)
        self.tagger = Tagger.load(
            self.model_dir, batch_size=self.batch_size, threads=self.threads, precision=self.precision
        )

    def decode_request(self, request: TagRequest) -> tuple[bool, list[tuple[list[str], list[tuple[int, int]]]]]:
        """Whether the request is a list, and each sentence's words with their character offsets (text only)."""
        from nasty_lightning.inference import word_spans

        many = isinstance(request.root, list)
        sentences = []
        for s in request.root if many else [request.root]:
            if s.words is not None:
                sentences.append((s.words, []))
            else:
                spans = word_spans(s.text)
                sentences.append(([w for w, _, _ in spans], [(a, b) for _, a, b in spans]))
        return many, sentences

    def batch(self, inputs: list[Any]) -> list[Any]:
        return inputs

    def predict(self, requests: list[Any]) -> list[Any]:
        predicted = self.tagger.predict([words for _, sentences in requests for words, _ in sentences])
        out, i = [], 0
        for many, sentences in requests:
            answers = []
            for words, offsets in sentences:
                rows = [
                    {"word": w, **{c: predicted[c][i][k] for c in self.tagger.columns}} for k, w in enumerate(words)
                ]
                for row, (start, end) in zip(rows, offsets, strict=False):
                    row.update(start=start, end=end)
                answers.append({"words": rows})
                i += 1
            out.append(answers if many else answers[0])
        return out

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output: Any) -> Any:
        """The JSON body, serialised once, here in the worker: FastAPI passes a ``Response`` through as it is."""
        return Response(json.dumps(output, ensure_ascii=False), media_type="application/json")


def serve(
    model_dir: str,
    port: int = 8000,
    host: Literal["127.0.0.1", "0.0.0.0", "::"] = "127.0.0.1",
    threads: int | None = None,
    batch_size: int = 64,
    max_batch_size: int = 16,
    precision: Literal["float32", "bf16", "auto"] = "float32",
) -> None:
    """Serve an exported (or quantized) model over HTTP until Ctrl-C or SIGTERM.

    ``POST /predict`` takes JSON: ``{"text": "..."}`` (split into words as ``tag`` splits plain text),
    ``{"words": ["...", ...]}``, or a list of up to 256 of them; it answers, for each sentence,
    ``{"words": [{"word": ..., "<column>": ..., "start": ..., "end": ...}, ...]}`` (character offsets for
    text only), or a list of those. A malformed or empty request gets 422 with the reason.
    ``GET /health`` answers ``ok`` once the model is loaded.

    Args:
        model_dir: Model directory written by ``fit`` (RUN/model), ``nasty-train export`` or ``quantize``.
        port: TCP port to listen on (1024 to 65535).
        host: Address to listen on: 127.0.0.1 (this machine only), or 0.0.0.0 / :: (every interface).
        threads: CPU threads for the model (default: the cores this process may use, at most 4).
        batch_size: Sentences per forward pass.
        max_batch_size: Most requests tagged together: those waiting when the model is free, never waiting for more.
        precision: The weights' type: float32 (as validation in fit scores the model); bf16, bfloat16, faster
            where the CPU computes it natively (AVX512-BF16, AMX; Arm BF16) and a word in a few thousand tagged
            differently (README, Speed); auto, bf16 where native, float32 elsewhere. Quantized models: INT8.
    """
    from nasty_lightning.errors import UserError
    from nasty_lightning.inference import Tagger, check_batch_size, use_threads

    check_batch_size(batch_size)
    if not 1024 <= port <= 65535:
        raise UserError(f"--port must be from 1024 to 65535, got {port}")
    if max_batch_size < 1:
        raise UserError(f"--max_batch_size must be positive, got {max_batch_size}")
    threads = use_threads(threads)
    Tagger.load(model_dir, batch_size=batch_size, threads=1, precision=precision)  # a bad directory fails here
    api = TaggingAPI(model_dir, batch_size, threads, max_batch_size, precision)
    server = PipeServer(api, accelerator="cpu", devices=1, workers_per_device=1, max_payload_size=MAX_BODY_BYTES)
    server.app.add_exception_handler(RequestValidationError, _validation_error)
    _stop_on_sigterm()
    os.register_at_fork(after_in_child=functools.partial(_stop_with, os.getpid()))  # LitServe's forked processes
    print(
        f"serving {model_dir} at http://{host}:{port}: POST /predict, GET /health (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    # LitServe's queues leave a semaphore to multiprocessing's resource tracker, which warns about it at exit
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:multiprocessing.resource_tracker")
    server.run(host=host, port=port, num_api_servers=1, generate_client_file=False, log_level="warning")
    print("nasty-train serve: stopped", file=sys.stderr)


def _stop_on_sigterm() -> None:
    """SIGTERM stops the server as Ctrl-C does (LitServe shuts its workers down on KeyboardInterrupt); in
    the processes LitServe starts, SIGTERM keeps its usual meaning."""
    main = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def _stop_with(parent: int) -> None:
    """On Linux, SIGTERM to this process when ``parent`` (``serve``'s own process) dies, so that a ``serve``
    killed outright (SIGKILL, the out-of-memory killer) leaves no HTTP server holding its port, no model in
    memory and no LitServe manager behind. Elsewhere, and in ``parent`` itself, nothing."""
    if sys.platform != "linux" or os.getpid() == parent:
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that
        os.kill(os.getpid(), signal.SIGTERM)
