"""``nasty-train serve``: requests checked where they arrive, batched in the worker, a clean shutdown."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
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
from nasty_lightning.serving import MAX_SENTENCES, GreedyBatches, PipeServer, PipeTransport, TaggingAPI, TagRequest

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


def test_answers_cross_the_pipe_in_order_and_a_quiet_pipe_times_out():
    transport = PipeTransport(consumers=2)
    answer = ("uid", (Response("x" * 200_000), "OK", "REGULAR", 0))  # larger than a pipe's buffer

    async def receive() -> list:
        got = [await transport.areceive(1, timeout=0.05)]  # nothing sent yet
        writer = threading.Thread(target=lambda: [transport.send(answer, 1), transport.send(("b", ()), 1)])
        writer.start()
        got += [await transport.areceive(1), await transport.areceive(1)]
        writer.join()
        return got

    nothing, first, second = asyncio.run(receive())
    assert nothing is None
    assert first[0] == "uid" and first[1][0].body == answer[1][0].body
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


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    command = [NASTY_TRAIN, "serve", "--model_dir", str(V1), "--port", str(port), "--threads", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while True:
        try:
            if _request(port, "GET", "/health")[0] == 200:
                break
        except OSError:
            pass
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.2)
    yield port, process
    if process.poll() is None:
        process.kill()
        process.communicate()


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
    assert _request(port, "GET", "/predict")[0] == 405

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
