"""``nasty-train serve``: a tagging service over HTTP, built on LitServe (Lightning's serving library).

LitServe runs the model in a worker process and batches the requests that wait for it (``LitAPI(max_batch_size)``,
with ``_compat.litserve.BlockingBatchedLoop``, which waits for them without polling). Each request is validated
where it arrives (a bad one gets 422 with the reason, and never reaches the batch of others); the worker tags the
sentences of the requests it has collected in chunks of about ``CHUNK_WORDS`` words, and answers each request on
its own (``TaggingAPI.predict``): a request that fails, or runs past its time, gets its own error and the others
go on. ``WatchWorker`` answers 503 while the worker is
dead, and ``serve`` then stops with one line.

No ``from __future__ import annotations`` here: LitServe reads the annotation of ``decode_request``'s
argument as the request schema, and FastAPI needs it as a class, not a string.
"""

import asyncio
import functools
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import litserve
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nasty_lightning._compat.litserve import BlockingBatchedLoop, model_workers, without_gzip
from nasty_lightning._compat.uvicorn import timed_headers
from nasty_lightning.inference.serving_http import TagRequest, validation_error

MAX_BODY_BYTES = 16 * 2**20  # a larger body gets 413; the largest request TagRequest allows is about 13 MB
CHUNK_WORDS = 1024  # the worker tags a batch in chunks of about this many words, checking the time between them
WATCH_SECONDS = 0.2  # how often the HTTP process looks whether the worker is alive, while requests wait
BACKSTOP_SECONDS = 10.0  # beyond --timeout, how long the HTTP process waits for an answer before it answers 504

log = logging.getLogger(__name__)


@dataclass(eq=False)  # hashed by identity
class Job:
    """A request in the worker: each sentence's words (and character offsets, for text), its deadline, each
    sentence's answer as it comes, or the error the whole request gets instead (status, reason)."""

    many: bool
    sentences: list[tuple[list[str], list[tuple[int, int]]]]
    deadline: float
    answers: list[dict | None] = field(default_factory=list)
    error: tuple[int, str] | None = None
    started: float | None = None  # when its first chunk began


class TaggingAPI(litserve.LitAPI):
    """Tags the sentences of every request of a batch, and answers each request on its own."""

    def __init__(
        self,
        model_dir: str,
        batch_size: int,
        threads: int,
        max_batch_size: int,
        precision: str = "float32",
        timeout: float = 30.0,
        max_request_seconds: float = 10.0,
    ) -> None:
        # a batch is what waits when the model is free: LitServe's own loop would poll its queue for it
        super().__init__(max_batch_size=max_batch_size, loop=BlockingBatchedLoop() if max_batch_size > 1 else "auto")
        self.model_dir, self.batch_size, self.threads, self.precision = model_dir, batch_size, threads, precision
        self.timeout, self.max_request_seconds = timeout, max_request_seconds
        self.serve_pid = os.getpid()
        # the worker's process id, once its model is loaded: shared with the worker (spawned) and the HTTP process
        # (forked), where health() and WatchWorker read it
        self.worker_pid = multiprocessing.get_context("spawn").Value("i", 0, lock=False)

    def setup(self, device: str) -> None:
        from nasty_lightning.inference.runtime import use_threads
        from nasty_lightning.inference.tagger import Tagger

        _stop_with(self.serve_pid)
        if os.getpid() != self.serve_pid:  # the worker: serve stops it on a terminal's Ctrl-C, which reaches it too
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        use_threads(self.threads)
        self.tagger = Tagger.load(
            self.model_dir, batch_size=self.batch_size, threads=self.threads, precision=self.precision
        )
        self.worker_pid.value = os.getpid()

    def worker_alive(self) -> bool:
        """Whether the worker has loaded the model and is still running (a zombie is not)."""
        pid = self.worker_pid.value
        if not pid:
            return False
        if sys.platform != "linux":
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return False
        return stat.rpartition(b")")[2].split()[0] not in (b"Z", b"X")

    def health(self) -> bool:
        """``GET /health`` answers ok only while this is true (and LitServe's workers are ready)."""
        return self.worker_alive()

    def decode_request(self, request: TagRequest) -> Job:
        """Each sentence's words, with their character offsets for text."""
        from nasty_lightning.formats.texts import word_spans

        many = isinstance(request.root, list)
        sentences = []
        for s in request.root if many else [request.root]:
            if s.words is not None:
                sentences.append((s.words, []))
            else:
                spans = word_spans(s.text)
                sentences.append(([w for w, _, _ in spans], [(a, b) for _, a, b in spans]))
        return Job(many, sentences, request.arrived + self.timeout, [None] * len(sentences))

    def batch(self, inputs: list[Job]) -> list[Job]:
        return inputs

    def predict(self, jobs: list[Job] | Job) -> list[Job] | Job:
        """Tag the sentences of every request, in chunks of about ``CHUNK_WORDS`` words in the order they came.

        Before each chunk, a request past its deadline (``--timeout`` after it arrived), or tagged for longer
        than ``--max_request_seconds``, gets 504 and the rest of it is dropped; a chunk that fails is tagged again
        request by request, and a request that fails alone gets 500. LitServe fails every request of a batch
        when ``predict`` raises: this does not raise. (With ``--max_batch_size 1`` LitServe passes one request.)
        """
        pending = [(job, s) for job in (jobs if isinstance(jobs, list) else [jobs]) for s in range(len(job.sentences))]
        for chunk in _chunks(pending):
            now = time.monotonic()
            for job in dict.fromkeys(job for job, _ in chunk):
                if job.error is None and now > job.deadline:
                    job.error = (504, f"the request was not tagged within --timeout {self.timeout:g} s of its arrival")
                elif job.error is None and job.started is not None and now - job.started > self.max_request_seconds:
                    job.error = (
                        504,
                        f"tagging the request took more than --max_request_seconds {self.max_request_seconds:g} s; "
                        "send fewer or shorter sentences in each request",
                    )
            self._tag_chunk([(job, s) for job, s in chunk if job.error is None])
        return jobs

    def _tag_chunk(self, chunk: list[tuple[Job, int]]) -> None:
        """Tag these sentences together; if that fails, each request's alone."""
        if not chunk:
            return
        now = time.monotonic()
        for job, _ in chunk:
            job.started = job.started or now
        try:
            self._tag(chunk)
            return
        except Exception:
            jobs = list(dict.fromkeys(job for job, _ in chunk))
            if len(jobs) == 1:
                log.exception("tagging a request failed")
                jobs[0].error = (500, "tagging this request failed; the server's log has the reason")
                return
        for job in jobs:
            self._tag_chunk([(j, s) for j, s in chunk if j is job])

    def _tag(self, chunk: list[tuple[Job, int]]) -> None:
        predicted = self.tagger.predict([_words(item) for item in chunk])
        words_of = [h.column for h in self.tagger.heads if not h.is_sentence]
        texts_of = [h for h in self.tagger.heads if h.is_sentence]  # a text's label (a list of labels, multi-label)
        answers = []
        for i, (job, s) in enumerate(chunk):
            words, offsets = job.sentences[s]
            rows = [{"word": w, **{c: predicted[c][i][k] for c in words_of}} for k, w in enumerate(words)]
            for row, (start, end) in zip(rows, offsets, strict=False):
                row.update(start=start, end=end)
            answer = {"words": rows}
            for h in texts_of:
                value = (predicted[h.column][i] or [None])[0]
                answer[h.column] = h.parts(value) if h.multi_label else value
            answers.append(answer)
        for (job, s), answer in zip(chunk, answers, strict=True):
            job.answers[s] = answer

    def unbatch(self, output: list[Job]) -> list[Job]:
        return output

    def encode_response(self, job: Job) -> Response:
        """The request's answer, or its own error: a ``Response`` passes through LitServe and FastAPI as it is,
        status and all, so one request's error fails no other of its batch. The JSON is written here, once."""
        try:
            if job.error is None:
                body = job.answers if job.many else job.answers[0]
                return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")
        except Exception:
            log.exception("writing an answer failed")
            job.error = (500, "writing the answer failed; the server's log has the reason")
        return _error(*job.error)


def _words(item: tuple[Job, int]) -> list[str]:
    job, s = item
    return job.sentences[s][0]


def _chunks(items: list[tuple[Job, int]]) -> Iterator[list[tuple[Job, int]]]:
    """Runs of sentences of at most ``CHUNK_WORDS`` words in all (a longer sentence alone)."""
    chunk: list[tuple[Job, int]] = []
    words = 0
    for item in items:
        if chunk and words + len(_words(item)) > CHUNK_WORDS:
            yield chunk
            chunk, words = [], 0
        chunk.append(item)
        words += len(_words(item))
    if chunk:
        yield chunk


class WatchWorker:
    """ASGI middleware for ``POST /predict``: 503 at once while the model worker is dead; a request waiting for
    its answer when the worker dies gets 503 as soon as that is seen; one still without an answer ``backstop``
    seconds after it came gets 504. An answer that has begun is never cut.

    (LitServe's own watch runs in ``serve``'s process, where it cannot answer the requests that wait in the
    HTTP process: without this, they waited for ever.)"""

    def __init__(self, app: ASGIApp, api: TaggingAPI, backstop: float) -> None:
        self.app, self.api, self.backstop = app, api, backstop
        self.died: asyncio.Future | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.api.api_path:
            await self.app(scope, receive, send)
            return
        if self.died is None:
            self.died = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._watch())
        if self.died.done():
            await _error(503, "the model worker has died; the server is stopping")(scope, receive, send)
            return
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        answer = asyncio.ensure_future(self.app(scope, receive, send_started))
        await asyncio.wait({answer, self.died}, timeout=self.backstop, return_when=asyncio.FIRST_COMPLETED)
        if answer.done() or started:
            await answer
            return
        answer.cancel()
        if self.died.done():
            await _error(503, "the model worker died; the server is stopping")(scope, receive, send)
        else:
            await _error(504, f"no answer from the model within {self.backstop:g} s")(scope, receive, send)

    async def _watch(self) -> None:
        while self.api.worker_alive():
            await asyncio.sleep(WATCH_SECONDS)
        self.died.set_result(None)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def serve(
    model_dir: str,
    port: int = 8000,
    host: Literal["127.0.0.1", "0.0.0.0", "::"] = "127.0.0.1",
    threads: int | None = None,
    batch_size: int = 64,
    max_batch_size: int = 16,
    precision: Literal["float32", "bf16", "auto"] = "float32",
    timeout: float = 30.0,
    max_request_seconds: float = 10.0,
    header_timeout: float = 10.0,
) -> None:
    """Serve an exported (or quantized) model over HTTP until Ctrl-C or SIGTERM.

    ``POST /predict`` takes JSON: ``{"text": "..."}`` (split into words as ``tag`` splits plain text),
    ``{"words": ["...", ...]}``, or a list of up to 256 of them; it answers, for each sentence,
    ``{"words": [{"word": ..., "<column>": ..., "start": ..., "end": ...}, ...]}`` (character offsets for
    text only), or a list of those. A malformed or empty request gets 422 with the reason; a request out of
    time 504. ``GET /health`` answers ``ok`` once the model is loaded, and 503 if its worker has died; the
    server then stops, with status 2.

    Args:
        model_dir: Model directory written by ``fit`` (RUN/model), ``nasty-train export`` or ``quantize``.
        port: TCP port to listen on (1024 to 65535).
        host: Address to listen on: 127.0.0.1 (this machine only), or 0.0.0.0 / :: (every interface).
        threads: CPU threads for the model (default: the cores this process may use, at most 4).
        batch_size: Sentences per forward pass.
        max_batch_size: Most requests tagged together: those waiting when the model is free.
        precision: The weights' type: float32 (as validation in fit scores the model); bf16, bfloat16, faster
            where the CPU computes it natively (AVX512-BF16, AMX; Arm BF16) and a word in a few thousand tagged
            differently (docs/benchmarks.md); auto, bf16 where native, float32 elsewhere. Quantized models: INT8.
        timeout: Seconds from a request's arrival to its answer: a request not tagged by then gets 504.
        max_request_seconds: Seconds of tagging one request may take: a larger one gets 504 once it has taken
            them, and the requests behind it go on.
        header_timeout: Seconds a connection has to send a request's headers, from its opening or its
            previous answer; then it is closed.
    """
    from nasty_lightning.errors import UserError
    from nasty_lightning.inference.runtime import check_batch_size, use_threads
    from nasty_lightning.inference.tagger import Tagger

    check_batch_size(batch_size)
    if not 1024 <= port <= 65535:
        raise UserError(f"--port must be from 1024 to 65535, got {port}")
    if max_batch_size < 1:
        raise UserError(f"--max_batch_size must be positive, got {max_batch_size}")
    seconds = {"timeout": timeout, "max_request_seconds": max_request_seconds, "header_timeout": header_timeout}
    for name, value in seconds.items():
        if not 0 < value < float("inf"):
            raise UserError(f"--{name} must be a positive number of seconds, got {value}")
    threads = use_threads(threads)
    Tagger.load(model_dir, batch_size=batch_size, threads=1, precision=precision)  # a bad folder fails here
    api = TaggingAPI(model_dir, batch_size, threads, max_batch_size, precision, timeout, max_request_seconds)
    server = litserve.LitServer(
        api,
        accelerator="cpu",
        devices=1,
        workers_per_device=1,
        timeout=False,  # TaggingAPI.predict times requests (LitServe's only their wait in its queue)
        max_payload_size=MAX_BODY_BYTES,
        middlewares=[(WatchWorker, {"api": api, "backstop": timeout + BACKSTOP_SECONDS})],
    )
    without_gzip(server)  # which every request passed through: answers are JSON for loopback or a local network
    server.app.add_exception_handler(RequestValidationError, validation_error)
    _stop_on_sigterm()
    os.register_at_fork(after_in_child=functools.partial(_stop_with, os.getpid()))  # LitServe's forked processes
    print(
        f"serving {model_dir} at http://{host}:{port}: POST /predict, GET /health (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    # LitServe's queues leave a semaphore to multiprocessing's resource tracker, which warns about it at exit
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:multiprocessing.resource_tracker")
    try:
        server.run(
            host=host,
            port=port,
            num_api_servers=1,
            generate_client_file=False,
            log_level="warning",
            http=timed_headers(header_timeout),
        )
    except Exception:
        dead = [w for w in model_workers(server) if w.exitcode is not None]
        if not dead:
            raise
        code = dead[0].exitcode
        how = f"signal {-code}, {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        raise UserError(f"the model worker (process {dead[0].pid}) died ({how}); the server stopped") from None
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
