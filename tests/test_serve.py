"""``nasty-train serve``: requests checked where they arrive, batched in the worker, a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Queue

import litserve.server as litserve_server
import pytest
from fastapi.responses import Response
from pydantic import ValidationError

from nasty_lightning.inference import Tagger
from nasty_lightning.serving import (
    MAX_BODY_BYTES,
    MAX_SENTENCES,
    FastPredict,
    GreedyBatches,
    PipeServer,
    PipeTransport,
    TaggingAPI,
    TagRequest,
)

V1 = Path(__file__).parent / "fixtures" / "v1_upos" / "model"
NASTY_TRAIN = str(Path(sys.executable).with_name("nasty-train"))


def _error(body: object) -> str:
    with pytest.raises(ValidationError) as caught:
        TagRequest.model_validate(body)
    return caught.value.errors()[0]["msg"]


def test_a_request_is_one_sentence_or_a_list_and_each_problem_has_its_message():
    assert TagRequest.model_validate({"text": "The cat sat."}).root.text == "The cat sat."
    assert [s.words for s in TagRequest.model_validate([{"words": ["a"]}, {"text": "b"}]).root] == [["a"], None]
    assert "the sentence has no word" in _error({"text": "   "})
    assert "give either 'text' or 'words'" in _error({"text": "a", "words": ["a"]})
    assert "give either 'text' or 'words'" in _error({})
    assert "every word must be a non-empty string without spaces" in _error({"words": ["a b"]})
    assert "every word must be a non-empty string without spaces" in _error({"words": [""]})
    assert "words.0: Input should be a valid string" in _error({"words": [3]})
    assert "sentence 2: expected an object" in _error([{"text": "a"}, "b"])
    assert f"give from 1 to {MAX_SENTENCES} sentences, not 0" in _error([])
    assert f"not {MAX_SENTENCES + 1}" in _error([{"text": "a"}] * (MAX_SENTENCES + 1))
    assert "extra" in _error({"text": "a", "lang": "en"}).lower()
    assert "Content-Type: application/json" in _error(b'{"text": "a"}')


class _Transport:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, item, consumer_id) -> None:
        self.sent.append(item)


def test_the_worker_takes_every_waiting_request_as_one_batch_and_no_more():
    api = TaggingAPI(str(V1), batch_size=64, threads=1, max_batch_size=3)
    api.request_timeout = 30  # as LitServer sets it
    queue: Queue = Queue()
    for uid in "abcd":
        queue.put((0, uid, time.monotonic(), {"text": uid}))
    loop = GreedyBatches()
    batch, timed_out = loop.get_batch_requests(api, queue, _Transport())
    assert [uid for _, uid, _ in batch] == ["a", "b", "c"] and not timed_out
    assert api.max_batch_size == 3  # restored
    batch, _ = loop.get_batch_requests(api, queue, _Transport())
    assert [uid for _, uid, _ in batch] == ["d"]  # the one left, at once: no waiting for more


def test_the_worker_answers_each_request_of_a_batch_and_fails_them_all_together():
    api = TaggingAPI(str(V1), batch_size=64, threads=1, max_batch_size=3)
    api.request_timeout = 30
    api.setup("cpu")
    queue: Queue = Queue()
    queue.put((0, "late", time.monotonic() - 60, TagRequest.model_validate({"text": "waited a minute"})))
    requests = {"a": {"text": "the cat sat."}, "b": [{"words": ["a", "dog"]}, {"text": "ran"}]}
    for uid, body in requests.items():
        queue.put((0, uid, time.monotonic(), TagRequest.model_validate(body)))
    queue.put((None, None, None, None))  # LitServe's sentinel, in the next batch: the loop returns
    transport = _Transport()
    GreedyBatches().run_batched_loop(api, queue, transport, callback_runner=None)
    sent = {uid: message for uid, message in transport.sent}
    expected = Tagger.load(V1).tag(["the cat sat.", ["a", "dog"], "ran"])
    answer, status, _, _ = sent["a"]
    assert status == "OK" and [(w["word"], w["upos"]) for w in json.loads(answer.body)["words"]] == expected[0]
    answer, status, _, _ = sent["b"]
    assert [[(w["word"], w["upos"]) for w in s["words"]] for s in json.loads(answer.body)] == expected[1:]
    error, status, _, _ = sent["late"]
    assert status == "ERROR" and error.status_code == 504

    class Broken(TaggingAPI):
        def predict(self, requests: list) -> list:
            raise RuntimeError("out of memory")

    broken = Broken(str(V1), batch_size=64, threads=1, max_batch_size=2)
    broken.request_timeout = 30
    for uid in "cd":
        queue.put((0, uid, time.monotonic(), TagRequest.model_validate({"text": uid})))
    queue.put((None, None, None, None))
    transport = _Transport()
    GreedyBatches().run_batched_loop(broken, queue, transport, callback_runner=None)
    assert [(uid, message[1]) for uid, message in transport.sent] == [("c", "ERROR"), ("d", "ERROR")]


def _asgi(app, headers: list, chunks: list[bytes], path: str = "/predict") -> tuple[int, bytes]:
    """One request through an ASGI app, its body in ``chunks``; the status and body it answers."""
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    incoming = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_fast_path_takes_a_valid_request_and_leaves_every_other_to_fastapi():
    class Server:
        litapi_connector = [TaggingAPI(str(V1), batch_size=64, threads=1, max_batch_size=8)]

    async def fastapi(scope, receive, send):  # stands for the FastAPI app: answers 299 with the body it read
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await Response(body, status_code=299)(scope, receive, send)

    fast = FastPredict(fastapi, Server())
    handled = []

    async def handle_request(request, request_type):
        handled.append(request)
        if request.root.words == ["slow"]:
            raise litserve_server.HTTPException(504, "Request timed out")
        return Response(b'{"words": []}', media_type="application/json")

    fast.handler.handle_request = handle_request
    json_type = [(b"content-type", b"application/json")]
    assert _asgi(fast, json_type, [b'{"words": ["a",', b' "dog"]}']) == (200, b'{"words": []}')
    assert handled[-1].root.words == ["a", "dog"]
    assert _asgi(fast, json_type, [b'{"words": ["slow"]}']) == (504, b'{"detail":"Request timed out"}')
    count = len(handled)
    for headers, chunks, path in (
        (json_type, [b'{"text": ', b'""}'], "/predict"),  # fails validation: FastAPI's 422
        (json_type, [b'{"text": "x"'], "/predict"),  # not JSON
        ([(b"content-type", b"text/plain")], [b'{"text": "x"}'], "/predict"),
        (json_type, [b'{"text": "x"}'], "/health"),
    ):
        assert _asgi(fast, headers, chunks, path) == (299, b"".join(chunks))  # the body replayed, whole
    assert len(handled) == count


def test_with_an_api_key_every_request_takes_fastapis_path_and_its_key_check(monkeypatch):
    def middlewares() -> list:
        api = TaggingAPI(str(V1), batch_size=64, threads=1, max_batch_size=8)
        server = PipeServer(api, accelerator="cpu", devices=1, workers_per_device=1, max_payload_size=MAX_BODY_BYTES)
        return [m.cls for m in server.app.user_middleware]

    assert FastPredict in middlewares()
    assert middlewares().index(FastPredict) == len(middlewares()) - 1  # inside the body-size limit
    monkeypatch.setattr(litserve_server, "LIT_SERVER_API_KEY", "secret")
    assert FastPredict not in middlewares()


def _event_loops() -> list:
    loops = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    with contextlib.suppress(ImportError):  # uvicorn's loop where installed; its add_reader makes a pipe non-blocking
        import uvloop

        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return loops


@pytest.mark.parametrize("new_loop", _event_loops())
def test_answers_cross_the_pipe_in_order_and_a_quiet_pipe_times_out(new_loop):
    transport = PipeTransport(consumers=2)
    answers = [("uid", (Response("x" * 200_000), "OK", "REGULAR", 0)), ("b", ())]  # the first, above a pipe's buffer

    def send_slowly() -> None:  # the first answer as Connection.send frames it, in pieces as a busy writer may
        data = pickle.dumps(answers[0])
        frame = struct.pack("!i", len(data)) + data
        for start in range(0, len(frame), 50_000):
            os.write(transport._writers[1].fileno(), frame[start : start + 50_000])
            time.sleep(0.02)
        transport.send(answers[1], 1)

    async def receive() -> list:
        got = [await transport.areceive(1, timeout=0.05)]  # nothing sent yet
        for _ in range(2):  # the second time, the pipe has been waited on: uvloop has made it non-blocking
            writer = threading.Thread(target=send_slowly)
            writer.start()
            got += [await transport.areceive(1), await transport.areceive(1)]
            writer.join()
        return got

    with asyncio.Runner(loop_factory=new_loop) as runner:
        nothing, *got = runner.run(receive())
    assert nothing is None
    for first, second in (got[:2], got[2:]):
        assert first[0] == "uid" and first[1][0].body == answers[0][1][0].body
        assert second == ("b", ())


def test_a_request_is_shown_without_its_text():
    request = TagRequest.model_validate([{"text": "private words"}, {"words": ["more"]}])
    assert str(request) == repr(request) == "TagRequest(2 sentences)"
    assert f"{request}" == "TagRequest(2 sentences)"  # as LitServe formats its debug message


def test_no_authentication_is_a_coroutine_and_an_api_key_is_still_checked(monkeypatch):
    server = PipeServer.__new__(PipeServer)  # setup_auth reads only the API it is given
    api = TaggingAPI(str(V1), batch_size=64, threads=1, max_batch_size=8)
    assert asyncio.iscoroutinefunction(server.setup_auth(api))
    monkeypatch.setattr(litserve_server, "LIT_SERVER_API_KEY", "secret")
    assert server.setup_auth(api) is litserve_server.api_key_auth


def test_one_predict_answers_every_request_of_a_batch_in_order():
    api = TaggingAPI(str(V1), batch_size=64, threads=1, max_batch_size=8)
    api.setup("cpu")
    requests = [
        api.decode_request(TagRequest.model_validate({"text": "the cat sat on a mat."})),
        api.decode_request(TagRequest.model_validate([{"words": ["a", "dog"]}, {"text": "ran"}])),
    ]
    single, several = api.predict(requests)
    expected = Tagger.load(V1).tag(["the cat sat on a mat.", ["a", "dog"], "ran"])
    assert [(w["word"], w["upos"]) for w in single["words"]] == expected[0]
    assert single["words"][1] == {"word": "cat", "upos": expected[0][1][1], "start": 4, "end": 7}
    assert [[(w["word"], w["upos"]) for w in s["words"]] for s in several] == expected[1:]
    assert "start" not in several[0]["words"][0]  # offsets for text only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes | None = None, json_type: bool = True):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if json_type else {}
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    return response.status, response.read().decode()


def _wait_for_health(port: int, process: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while True:
        try:
            if _request(port, "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    command = [NASTY_TRAIN, "serve", "--model_dir", str(V1), "--port", str(port), "--threads", "1"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    _wait_for_health(port, process)
    yield port, process
    if process.poll() is None:  # the SIGTERM test did not stop it (on another xdist worker, or it failed)
        process.terminate()
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # killed alone, serve leaves its HTTP and model processes
        os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.integration
def test_the_server_tags_rejects_bad_requests_and_answers_concurrent_clients(server):
    port, _ = server
    tagger = Tagger.load(V1)
    status, body = _request(port, "POST", "/predict", json.dumps({"text": "the dog barked."}).encode())
    assert status == 200
    assert [(w["word"], w["upos"]) for w in json.loads(body)["words"]] == tagger.tag("the dog barked.")[0]
    for bad, reason in (
        (b'{"text": "x"', "the body is not valid JSON"),
        (b'{"text": ""}', "the sentence has no word"),
        (b"[]", "give from 1 to"),
    ):
        status, body = _request(port, "POST", "/predict", bad)
        assert status == 422 and reason in json.loads(body)["detail"], body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # an answer above gzip's 1,000 bytes
    long = {"words": ["the", "cat", "sat"] * 40}
    connection.request(
        "POST", "/predict", json.dumps(long), {"Content-Type": "application/json", "Accept-Encoding": "gzip"}
    )
    response = connection.getresponse()
    assert response.getheader("Content-Encoding") is None and len(json.loads(response.read())["words"]) == 120
    status, body = _request(port, "POST", "/predict", b'{"text": "a"}', json_type=False)
    assert status == 422 and "Content-Type: application/json" in body
    status, body = _request(port, "POST", "/predict", b'{"text": "' + b"a" * MAX_BODY_BYTES + b'"}')
    assert status == 413, body
    assert _request(port, "GET", "/predict")[0] == 405

    many = [{"words": ["the", "cat", "sat", "on", "the", "mat", "."] * 10}] * 100  # a 300 KB answer, twice
    for _ in range(2):
        status, body = _request(port, "POST", "/predict", json.dumps(many).encode())
        assert status == 200 and [len(s["words"]) for s in json.loads(body)] == [70] * 100

    sentences = [["the", "cat", "sat"], ["a", "dog", "ran", "near", "the", "mat"]] * 4
    answers: dict[int, tuple[int, str]] = {}

    def client(i: int) -> None:
        answers[i] = _request(port, "POST", "/predict", json.dumps({"words": sentences[i]}).encode())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sentences))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = tagger.tag(sentences)
    for i, (status, body) in answers.items():
        assert status == 200 and [(w["word"], w["upos"]) for w in json.loads(body)["words"]] == expected[i]


@pytest.mark.integration
def test_sigterm_stops_the_server_cleanly(server):
    port, process = server
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-3000:]
    assert "nasty-train serve: stopped" in err and "Traceback" not in err, err[-3000:]
    with pytest.raises(OSError):
        _request(port, "GET", "/health")


def _group(pgid: int) -> list[str]:
    """The command lines of the live processes (zombies aside) in process group ``pgid``, from /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            if os.getpgid(int(pid)) == pgid and state != "Z":
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
    return found


@pytest.mark.integration
@pytest.mark.skipif(sys.platform != "linux", reason="the processes serve starts follow it through Linux's prctl")
def test_killed_outright_serve_leaves_no_process_behind():
    port = _free_port()
    command = [NASTY_TRAIN, "serve", "--model_dir", str(V1), "--port", str(port), "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for_health(port, process)
        assert len(_group(process.pid)) >= 4  # serve, its HTTP server, the model's worker, LitServe's manager
        process.kill()
        process.wait()
        deadline = time.time() + 30
        while _group(process.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _group(process.pid), _group(process.pid)
        with pytest.raises(OSError):
            _request(port, "GET", "/health")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
