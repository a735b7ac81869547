"""``nasty-train serve``: requests checked where they arrive, each answered on its own, bounded in time, a dead
worker seen at once, a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import V1_MODEL
from pydantic import ValidationError

from nasty_lightning.inference import serving
from nasty_lightning.inference.serving import MAX_BODY_BYTES, TaggingAPI
from nasty_lightning.inference.serving_http import MAX_SENTENCES, TagRequest
from nasty_lightning.inference.tagger import Tagger

V1 = V1_MODEL
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


def test_text_the_tokenizer_cannot_take_is_refused_where_it_arrives():
    assert (
        _error({"text": "a \ud800 b"})
        == "Value error, text: character 3 is a lone surrogate (U+D800), not Unicode text"
    )
    assert _error([{"text": "ok"}, {"words": ["a", "b\udfff"]}]) == (
        "Value error, sentence 2: word 2: character 2 is a lone surrogate (U+DFFF), not Unicode text"
    )
    assert TagRequest.model_validate({"text": "caf\u00e9 \U0001f600"}).root.text == "caf\u00e9 \U0001f600"


def _tagged(answer) -> object:
    """The (word, upos) pairs of an answer: one sentence's, or a list's."""
    body = json.loads(answer.body)
    if isinstance(body, list):
        return [[(w["word"], w["upos"]) for w in s["words"]] for s in body]
    return [(w["word"], w["upos"]) for w in body["words"]]


@pytest.fixture(scope="module")
def api() -> TaggingAPI:
    api = TaggingAPI(str(V1), batch_size=64, threads=1, max_batch_size=8)
    api.setup("cpu")
    return api


def test_each_request_of_a_batch_gets_its_own_answer_across_chunks(api, monkeypatch):
    monkeypatch.setattr(serving, "CHUNK_WORDS", 5)  # three chunks: 7 words, then 2, then 6 (the second request)
    bodies = [{"text": "the cat sat on a mat."}, [{"words": ["a", "dog"]}, {"text": "ran to the big red house"}]]
    jobs = [api.decode_request(TagRequest.model_validate(body)) for body in bodies]
    single, several = [api.encode_response(job) for job in api.predict(jobs)]
    expected = Tagger.load(V1).tag(["the cat sat on a mat.", ["a", "dog"], "ran to the big red house"])
    assert single.status_code == several.status_code == 200
    assert _tagged(single) == expected[0] and _tagged(several) == expected[1:]
    assert json.loads(single.body)["words"][1] == {"word": "cat", "upos": expected[0][1][1], "start": 4, "end": 7}
    assert "start" not in json.loads(several.body)[0]["words"][0]  # offsets for text only
    job = api.decode_request(TagRequest.model_validate({"words": ["a", "dog"]}))
    assert _tagged(api.encode_response(api.predict(job))) == expected[1]  # one request (--max_batch_size 1)


def test_a_request_that_fails_in_the_worker_fails_alone(api, monkeypatch):
    predict = api.tagger.predict
    calls = []

    def fragile(sentences: list[list[str]]) -> dict:
        calls.append(len(sentences))
        if ["boom"] in sentences:
            raise RuntimeError("the tokenizer choked")
        return predict(sentences)

    monkeypatch.setattr(api.tagger, "predict", fragile)
    bodies = [{"text": "the cat"}, [{"words": ["a"]}, {"words": ["boom"]}], {"words": ["a", "dog"]}]
    answers = [
        api.encode_response(j) for j in api.predict([api.decode_request(TagRequest.model_validate(b)) for b in bodies])
    ]
    assert [a.status_code for a in answers] == [200, 500, 200]
    assert json.loads(answers[1].body) == {"detail": "tagging this request failed; the server's log has the reason"}
    expected = Tagger.load(V1).tag(["the cat", ["a", "dog"]])
    assert _tagged(answers[0]) == expected[0] and _tagged(answers[2]) == expected[1]
    assert calls == [4, 1, 2, 1]  # the four sentences together, then each request's alone


def test_a_request_past_its_deadline_gets_504_and_the_others_their_answers(api):
    late, on_time = (TagRequest.model_validate({"text": "the cat"}) for _ in range(2))
    late._arrived -= api.timeout + 1  # it waited longer than --timeout for the worker
    answers = [api.encode_response(j) for j in api.predict([api.decode_request(r) for r in (late, on_time)])]
    assert [a.status_code for a in answers] == [504, 200]
    assert json.loads(answers[0].body) == {"detail": "the request was not tagged within --timeout 30 s of its arrival"}


class _Api:
    """Stands for ``TaggingAPI`` in ``WatchWorker``: its path, and whether its worker lives."""

    api_path = "/predict"
    alive = True

    def worker_alive(self) -> bool:
        return self.alive


async def _asgi(app) -> tuple[int, bytes]:
    """A ``POST /predict`` through an ASGI app: the status and body it answers."""
    sent: list = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_watch_answers_503_once_the_worker_is_dead_and_504_when_no_answer_comes(monkeypatch):
    monkeypatch.setattr(serving, "WATCH_SECONDS", 0.01)
    api = _Api()

    async def silent(scope, receive, send) -> None:  # a worker that never answers
        await asyncio.sleep(60)

    async def slow(scope, receive, send) -> None:  # an answer that has begun when the backstop comes
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"all of it"})

    async def scenario() -> list:
        watch = serving.WatchWorker(silent, api, backstop=0.2)
        got = [await _asgi(watch), await _asgi(serving.WatchWorker(slow, api, backstop=0.1))]
        waiting = asyncio.ensure_future(_asgi(watch))
        await asyncio.sleep(0.05)
        api.alive = False
        got.append(await asyncio.wait_for(waiting, 1))
        return [*got, await asyncio.wait_for(_asgi(watch), 0.1)]

    late, begun, in_flight, after = asyncio.run(scenario())
    assert late == (504, b'{"detail":"no answer from the model within 0.2 s"}')
    assert begun == (200, b"all of it")
    assert in_flight == (503, b'{"detail":"the model worker died; the server is stopping"}')
    assert after == (503, b'{"detail":"the model worker has died; the server is stopping"}')


def test_a_request_is_shown_without_its_text():
    request = TagRequest.model_validate([{"text": "private words"}, {"words": ["more"]}])
    assert str(request) == repr(request) == "TagRequest(2 sentences)"
    assert f"{request}" == "TagRequest(2 sentences)"  # as LitServe formats its debug message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes | None = None, json_type: bool = True, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
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


@contextlib.contextmanager
def _serving(*options: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """``nasty-train serve`` of the tiny model on a free loopback port, with these options; stopped after."""
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    command = [NASTY_TRAIN, "serve", "--model_dir", str(V1), "--port", str(port), "--threads", "1", *options]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _wait_for_health(port, process)
        yield port, process
    finally:
        if process.poll() is None:  # not stopped by the test (or the test failed)
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=60)
        with contextlib.suppress(ProcessLookupError):  # killed alone, serve leaves its HTTP and model processes
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server():
    with _serving() as served:
        yield served


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.integration
def test_a_lone_surrogate_gets_422_and_the_requests_beside_it_their_answers(server):
    port, _ = server
    answers: dict[int, tuple[int, str]] = {}

    def client(i: int) -> None:
        body = {"text": "a \ud800 b"} if i == 36 else {"words": ["the", "cat", str(i)]}
        answers[i] = _request(port, "POST", "/predict", json.dumps(body).encode())  # JSON's escape: a valid body

    threads = [threading.Thread(target=client, args=(i,)) for i in range(73)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers.pop(36) == (422, '{"detail":"text: character 3 is a lone surrogate (U+D800), not Unicode text"}')
    expected = Tagger.load(V1).tag([["the", "cat", str(i)] for i in range(73)])
    assert len(answers) == 72
    for i, (status, body) in answers.items():
        assert status == 200 and [(w["word"], w["upos"]) for w in json.loads(body)["words"]] == expected[i], body


@pytest.mark.slow
@pytest.mark.integration
def test_sigterm_stops_the_server_cleanly(server):
    port, process = server
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-3000:]
    assert "nasty-train serve: stopped" in err and "Traceback" not in err, err[-3000:]
    with pytest.raises(OSError):
        _request(port, "GET", "/health")


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_in_a_terminal_stops_the_server_cleanly(tmp_path):
    port = _free_port()
    command = [NASTY_TRAIN, "serve", "--model_dir", str(V1), "--port", str(port), "--threads", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    # output to a file, not a pipe: serve is waited for itself, and then every process it started
    with open(tmp_path / "err", "w") as err_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            start_new_session=True,
            # as a terminal starts it: Ctrl-C at its default, whatever an earlier test in this process left
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        _wait_for_health(port, process)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal sends it: to serve and every process it started
        process.wait(timeout=60)
        deadline = time.time() + 30
        while _group(process.pid) and time.time() < deadline:
            time.sleep(0.2)
        left = _group(process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    err = (tmp_path / "err").read_text()
    assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "nasty-train serve: stopped"
    assert not left, left  # no process of serve's left behind


def _processes() -> Iterator[tuple[int, int, int, str]]:
    """Each live process (zombies aside): its id, parent's id, group and command line, from /proc."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            state, parent, group = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:3]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            if state != "Z":
                yield int(pid), int(parent), int(group), command


def _group(pgid: int) -> list[str]:
    """The command lines of the live processes in process group ``pgid``."""
    return [command for _, _, group, command in _processes() if group == pgid]


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def strict_server():
    with _serving("--max_request_seconds", "1", "--timeout", "20", "--header_timeout", "1") as served:
        yield served


@pytest.mark.slow
@pytest.mark.integration
def test_a_request_past_its_time_gets_504_and_a_small_one_behind_it_its_answer(strict_server):
    port, _ = strict_server
    big = json.dumps([{"words": ["the", "cat", "sat", "on"] * 500}] * MAX_SENTENCES).encode()  # about 6 s to tag
    answers: dict[str, tuple[int, str, float]] = {}

    def client(name: str, body: bytes) -> None:
        start = time.monotonic()
        answers[name] = (*_request(port, "POST", "/predict", body, timeout=60), time.monotonic() - start)

    first = threading.Thread(target=client, args=("big", big))
    first.start()
    time.sleep(1.5)  # the big request is being tagged
    client("small", b'{"text": "the cat"}')
    first.join(timeout=60)
    status, body, seconds = answers["big"]
    assert status == 504 and seconds < 10, (status, body[:300], seconds)
    assert json.loads(body)["detail"].startswith("tagging the request took more than --max_request_seconds 1 s")
    status, body, seconds = answers["small"]
    assert status == 200 and seconds < 5, (status, body[:300], seconds)


@pytest.mark.slow
@pytest.mark.integration
def test_a_connection_that_stops_sending_its_headers_is_closed(strict_server):
    port, _ = strict_server
    for sent in (b"POST /predict HTTP/1.1\r\nHost: x\r\n", b""):  # part of the headers, or nothing
        with socket.create_connection(("127.0.0.1", port)) as half_open:
            half_open.sendall(sent)
            half_open.settimeout(10)
            start = time.monotonic()
            assert half_open.recv(100) == b""  # closed, with no answer
            assert 0.5 < time.monotonic() - start < 5
    assert _request(port, "POST", "/predict", b'{"text": "still serving"}')[0] == 200


def _worker(serve: int) -> int:
    """The process id of ``serve``'s model worker (spawned by multiprocessing)."""
    return next(pid for pid, parent, _, command in _processes() if parent == serve and "spawn_main" in command)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(sys.platform != "linux", reason="finds the worker through /proc")
def test_a_dead_worker_gets_503_at_once_and_serve_stops_with_one_line():
    with _serving() as (port, process):
        worker = _worker(process.pid)
        waiting: list = []
        body = json.dumps([{"words": ["the", "cat"] * 1000}] * MAX_SENTENCES).encode()  # seconds of tagging
        request = threading.Thread(target=lambda: waiting.append(_request(port, "POST", "/predict", body)))
        request.start()
        time.sleep(1.5)
        os.kill(worker, signal.SIGKILL)
        start = time.monotonic()
        while worker in [pid for pid, *_ in _processes()] and time.monotonic() - start < 5:  # SIGKILL takes a moment
            time.sleep(0.01)
        start = time.monotonic()
        for method, path, body in (("GET", "/health", None), ("POST", "/predict", b'{"text": "a cat"}')):
            try:
                status = _request(port, method, path, body, timeout=5)[0]
            except OSError:  # serve has already stopped its HTTP server (it looks every 2 s)
                status = None
            assert status in (503, None) and time.monotonic() - start < 1, (path, status)
        request.join(timeout=30)
        assert waiting and waiting[0][0] == 503, waiting  # the request in flight
        assert time.monotonic() - start < 2
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"nasty-train: error: the model worker (process {worker}) died (signal 9, SIGKILL); the server stopped"
    )
