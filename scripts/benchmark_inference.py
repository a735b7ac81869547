"""Inference speed: batch-of-one latency, batched throughput and the HTTP server, float32 against bf16 and INT8.

    python scripts/benchmark_inference.py --model_dir RUN/model \\
        --dev_file ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu --threads 2

    python scripts/benchmark_inference.py quantizers --model_dir RUN/model --dev_file ... --threads 2

``run``: for the model given (fine-tuned: accuracy is measured) and for a randomly initialised encoder of
roberta-base's shape (12 layers, hidden size 768, 50,265 embeddings; latency does not depend on trained
weights; it reads the given model's tokenizer, so sentences have realistic subword counts), each arm runs
in a fresh process with the same threads:

- ``torch float32``: the model directory through ``Tagger``, as ``tag`` and ``serve`` run it;
- ``torch bf16``: the same with ``--precision bf16`` (only where the CPU computes bfloat16 natively);
- ``onnx float32``: the model as one float32 ONNX graph on ONNX Runtime (no quantization: what the
  runtime alone is worth);
- ``onnx int8``: ``nasty-train quantize``'s output.

Batch-of-one latency is ``Tagger.predict`` of one sentence (tokenisation and decoding included) over the
first ``--sentences`` dev sentences, after a warm-up; throughput tags the whole dev file in batches of 64.
The server (``nasty-train serve``) is measured on loopback with one client sending one sentence per
request, and with ``--clients`` clients at once (``--requests`` requests in all, each phase at most
``--max_seconds``), each on a keep-alive connection of a minimal HTTP/1.1 client (``_Client``). What it
adds to latency is measured apart (``added_latency``): one process tags blocks of sentences with ``Tagger``,
through the server with that client, and through the server with Python's ``http.client``, in turn, and
compares the p50s.

``served``: ``run``'s server phases alone, for one model directory.

``quantizers``: the candidates ``quantize`` was chosen from, timed on the network alone.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jsonargparse import auto_cli

NASTY = [str(Path(sys.executable).parent / "nasty-train")]


def _env(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
    }


def _worker(processes_threads: int, command: str, **kwargs) -> dict:
    """Run one measurement in a fresh process with ``processes_threads`` threads; returns what it reported."""
    args = [sys.executable, __file__, command] + [f"--{k}={v}" for k, v in kwargs.items()]
    done = subprocess.run(args, env=_env(processes_threads), capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{command} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sentences(dev_file: str) -> list:
    from nasty_lightning.formats.conllu import read_sentences

    return read_sentences(dev_file)


def latency(model_dir: str, dev_file: str, sentences: int, threads: int, bf16: bool = False) -> None:
    """One arm, in this process: batch-of-one latency, batched throughput and accuracy of the first column."""
    from nasty_lightning.commands.evaluate import column_scores
    from nasty_lightning.inference.runtime import use_threads
    from nasty_lightning.inference.tagger import Tagger

    use_threads(threads)
    tagger = Tagger.load(model_dir, threads=threads, precision="bf16" if bf16 else "float32")
    dev = _sentences(dev_file)
    words = [s.words for s in dev]
    for w in words[:20]:  # warm-up: first calls allocate and pick kernels
        tagger.predict([w])
    times = []
    for w in words[:sentences]:
        start = time.perf_counter()
        tagger.predict([w])
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    predicted = tagger.predict(words)
    seconds = time.perf_counter() - start
    scores, _ = column_scores(tagger.heads, dev, predicted)
    subwords = [len(tagger.tokenizer(w, is_split_into_words=True)["input_ids"]) for w in words[:sentences]]
    print(
        "RESULT "
        + json.dumps(
            {
                "p50_ms": 1e3 * statistics.median(times),
                "p95_ms": 1e3 * _percentile(times, 0.95),
                "sentences_per_second": len(words) / seconds,
                "accuracy": scores[tagger.label_column]["accuracy"],
                "mean_subwords": statistics.mean(subwords),
            }
        ),
        flush=True,
    )


def float_onnx(model_dir: str, output_dir: str) -> None:
    """A model directory holding ``model_dir`` as one float32 ONNX graph (the ``onnx float32`` arm)."""
    from nasty_lightning.formats.model_dir import ONNX_FILE
    from nasty_lightning.inference.onnx_model import quiet_onnx_export, write_onnx
    from nasty_lightning.inference.quantize import write_graph_companions
    from nasty_lightning.inference.tagger import Tagger
    from nasty_lightning.modelling.network import Network

    tagger = Tagger.load(model_dir)
    out = Path(output_dir)
    out.mkdir(parents=True)
    with quiet_onnx_export():
        write_onnx(Network(tagger.model, tagger.layers, tagger.casing), out / ONNX_FILE)
    write_graph_companions(tagger, out, {"method": "none: float32 ONNX graph (benchmark arm)"})
    print("RESULT {}", flush=True)


def random_roberta(model_dir: str, output_dir: str) -> None:
    """A randomly initialised encoder of roberta-base's shape with ``model_dir``'s labels and tokenizer."""
    import torch
    from transformers import AutoModelForTokenClassification, RobertaConfig

    from nasty_lightning.formats.model_dir import META_FILE
    from nasty_lightning.inference.tagger import Tagger

    torch.manual_seed(0)
    tagger = Tagger.load(model_dir)
    config = RobertaConfig(
        vocab_size=50265,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=tagger.tokenizer.pad_token_id,
        id2label=dict(enumerate(tagger.labels)),
        label2id={t: i for i, t in enumerate(tagger.labels)},
    )
    out = Path(output_dir)
    AutoModelForTokenClassification.from_config(config).save_pretrained(out)
    tagger.tokenizer.save_pretrained(out)
    meta = {k: v for k, v in tagger.meta.items() if k not in ("heads", "casing")}
    meta["base_model"] = "random weights, roberta-base shape"
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    print("RESULT {}", flush=True)


def quantizers(model_dir: str, dev_file: str, sentences: int = 500, threads: int = 2, out_dir: str = "") -> None:
    """The candidates ``quantize`` was chosen from, on the network alone (encoder and heads; no tokenisation
    or decoding): size, batch-of-one p50 over the first ``sentences`` dev sentences, sentences/s in
    batches of 64 over the whole dev file, and accuracy of the first column.

    Args:
        model_dir: A fine-tuned model directory of one column.
        dev_file: Labelled CoNLL-U file.
        sentences: Sentences timed one by one.
        threads: CPU threads.
        out_dir: Folder for the candidate files (default: a temporary folder, removed).
    """
    import copy

    import numpy as np
    import onnxruntime
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from nasty_lightning.data.batching import collate
    from nasty_lightning.data.encoding import encode
    from nasty_lightning.inference.onnx_model import quiet_onnx_export, write_onnx
    from nasty_lightning.inference.runtime import use_threads
    from nasty_lightning.inference.tagger import Tagger
    from nasty_lightning.modelling.network import Network

    use_threads(threads)
    tmp = Path(out_dir or tempfile.mkdtemp(prefix="quantizers-")).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    tagger = Tagger.load(model_dir)
    dev = _sentences(dev_file)
    gold = [s.labels(tagger.label_column) for s in dev]
    windows = encode([s.words for s in dev], tagger.tokenizer, tagger.max_length, long_words="truncate")
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
    batches = [[windows[j] for j in order[i : i + 64]] for i in range(0, len(order), 64)]
    batches = [(chunk, collate(chunk, tagger.tokenizer.pad_token_id)) for chunk in batches]

    def measure(name: str, run, size: int) -> None:
        right = total = 0
        start = time.perf_counter()
        for chunk, batch in batches:
            logits = np.asarray(run(batch))
            for r, w in enumerate(chunk):
                predicted = logits[r][batch.word_mask[r].numpy()].argmax(-1)
                labels = gold[w.sentence][w.first_word : w.first_word + len(predicted)]
                right += sum(tagger.labels[p] == g for p, g in zip(predicted, labels, strict=True))
                total += len(labels)
        seconds = time.perf_counter() - start
        for w in windows[:20]:
            run(collate([w], tagger.tokenizer.pad_token_id))
        times = []
        for w in windows[:sentences]:
            batch = collate([w], tagger.tokenizer.pad_token_id)
            begin = time.perf_counter()
            run(batch)
            times.append(time.perf_counter() - begin)
        print(
            f"| {name} | {size / 1e6:.1f} | {1e3 * statistics.median(times):.2f} | "
            f"{1e3 * _percentile(times, 0.95):.2f} | {len(windows) / seconds:.0f} | {100 * right / total:.2f} |",
            flush=True,
        )

    def torch_run(network):
        def run(batch):
            with torch.inference_mode():
                return network(batch.input_ids, batch.attention_mask, batch.casing)[0].float().numpy()

        return run

    def onnx_run(path: Path):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return lambda batch: session.run(None, {n: getattr(batch, n).numpy() for n in names})[0]

    def file_size(path: Path) -> int:
        return path.stat().st_size

    network = Network(tagger.model, tagger.layers, tagger.casing).eval()
    weights = sum(p.numel() * p.element_size() for p in network.parameters())
    print(f"CPU: {_cpu()}; {threads} threads; {len(windows)} sentences\n")
    print("| candidate | MB | batch-of-one p50 ms | p95 ms | sentences/s (batches of 64) | accuracy |")
    print("|---|---|---|---|---|---|")
    measure("PyTorch float32", torch_run(network), weights)
    measure("PyTorch bf16", torch_run(copy.deepcopy(network).to(torch.bfloat16)), weights // 2)
    dynamic = torch.ao.quantization.quantize_dynamic(copy.deepcopy(network), {torch.nn.Linear}, dtype=torch.qint8)
    torch.save(dynamic.state_dict(), tmp / "torch_dynamic.pt")
    measure("PyTorch dynamic int8 (Linear)", torch_run(dynamic), file_size(tmp / "torch_dynamic.pt"))
    with quiet_onnx_export():
        write_onnx(network, tmp / "float32.onnx")
    measure("ONNX Runtime float32", onnx_run(tmp / "float32.onnx"), file_size(tmp / "float32.onnx"))
    dynamic_variants = {
        "dynamic int8, MatMul, per tensor": dict(op_types_to_quantize=["MatMul"]),
        "dynamic int8, MatMul + Gather, per tensor": dict(op_types_to_quantize=["MatMul", "Gather"]),
        "dynamic int8, MatMul + Gather, per channel (chosen)": dict(
            op_types_to_quantize=["MatMul", "Gather"], per_channel=True
        ),
    }
    for i, (name, settings) in enumerate(dynamic_variants.items()):
        path = tmp / f"dynamic{i}.onnx"
        with quiet_onnx_export():
            quantize_dynamic(tmp / "float32.onnx", path, weight_type=QuantType.QInt8, **settings)
        measure(f"ONNX Runtime {name}", onnx_run(path), file_size(path))

    class Calibration(CalibrationDataReader):  # the first 512 dev sentences, in batches of 64
        def __init__(self) -> None:
            inputs = ("input_ids", "attention_mask", "casing")
            self.batches = iter([{k: getattr(b, k).numpy() for k in inputs} for _, b in batches[:8]])

        def get_next(self):
            return next(self.batches, None)

    here = os.getcwd()
    os.chdir(tmp)  # ONNX Runtime's static quantization leaves files in the working folder
    try:
        with quiet_onnx_export():
            quant_pre_process(tmp / "float32.onnx", tmp / "prepared.onnx", skip_symbolic_shape=True)
            quantize_static(
                tmp / "prepared.onnx",
                tmp / "static.onnx",
                Calibration(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                op_types_to_quantize=["MatMul", "Gather"],
            )
    finally:
        os.chdir(here)
    measure(
        "ONNX Runtime static int8 (QDQ, per channel, calibrated)",
        onnx_run(tmp / "static.onnx"),
        file_size(tmp / "static.onnx"),
    )
    if not out_dir:
        shutil.rmtree(tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Client:
    """One keep-alive HTTP/1.1 connection that posts one sentence and reads the answer by its Content-Length.

    The request's bytes are built before the clock starts. Python's ``http.client`` builds the request and
    parses the answer's headers in Python on every call: a client's cost, not the server's, so the server
    is timed with this client, and ``added_latency`` also gives what it adds with ``http.client``.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.connect()

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client sets it

    def close(self) -> None:
        self.sock.close()

    def post(self, words: list[str]) -> float:
        body = json.dumps({"words": words}).encode()
        request = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        request += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        start = time.perf_counter()
        self.sock.sendall(request)
        answer = b""
        while (end := answer.find(b"\r\n\r\n")) < 0:
            answer += self._recv()
        head = answer[:end].decode("latin-1").split("\r\n")
        length = next(int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:"))
        while len(answer) < end + 4 + length:
            answer += self._recv()
        seconds = time.perf_counter() - start
        if head[0].split()[1] != "200":
            raise SystemExit(f"the server answered {head[0]}")
        return seconds

    def _recv(self) -> bytes:
        data = self.sock.recv(1 << 16)
        if not data:
            raise SystemExit("the server closed the connection")
        return data


def _post(connection: http.client.HTTPConnection, words: list[str]) -> float:
    """``_Client.post`` with Python's ``http.client``."""
    body = json.dumps({"words": words})
    start = time.perf_counter()
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"the server answered {response.status}")
    return time.perf_counter() - start


def _clients(port: int, words: list[list[str]], clients: int, requests: int, max_seconds: float) -> dict:
    """``clients`` threads, each on its own keep-alive connection, share ``requests`` requests."""
    times: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + max_seconds

    def client(k: int) -> None:
        connection = _Client(port)
        for i in range(k, requests, clients):
            if time.perf_counter() > deadline:
                break
            t = connection.post(words[i % len(words)])
            with lock:
                times.append(t)
        connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(times),
        "requests_per_second": len(times) / wall,
        "p50_ms": 1e3 * statistics.median(times),
        "p95_ms": 1e3 * _percentile(times, 0.95),
    }


def added_latency(
    model_dir: str, dev_file: str, port: int, threads: int, sentences: int, block: int = 50, pause: float = 2.0
) -> None:
    """What the server adds, in this process: the first ``sentences`` sentences in blocks of ``block``, each
    block tagged back to back by ``Tagger`` here, sent back to back to the server with ``_Client``, and sent
    again with ``http.client``, the three in turn (which goes first rotates), ``pause`` seconds apart so
    that neither process's threads still spin (ONNX Runtime's spun for more than 0.1 s after a run); the
    same sentences, interleaved in time, so drift between runs does not count."""
    from nasty_lightning.inference.runtime import use_threads
    from nasty_lightning.inference.tagger import Tagger

    use_threads(threads)
    tagger = Tagger.load(model_dir, threads=threads)
    words = [s.words for s in _sentences(dev_file)][:sentences]
    client = _Client(port)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    arms = {
        "in process": lambda w: _timed(tagger.predict, [w]),
        "served": client.post,
        "http.client": lambda w: _post(connection, w),
    }
    for w in words[:20]:
        for run in arms.values():
            run(w)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    by_block: dict[str, list[float]] = {"served": [], "http.client": []}
    names = list(arms)
    for k in range(0, len(words), block):
        medians = {}
        for arm in names[k // block % 3 :] + names[: k // block % 3]:
            time.sleep(pause)
            if arm != "in process":  # a new connection, outside the timing: the server closes one idle for 5 s
                reconnecting = client if arm == "served" else connection
                reconnecting.close()
                reconnecting.connect()
            block_times = [arms[arm](w) for w in words[k : k + block]]
            times[arm] += block_times
            medians[arm] = statistics.median(block_times)
        for arm in by_block:
            by_block[arm].append(1e3 * (medians[arm] - medians["in process"]))
    p50 = {arm: 1e3 * statistics.median(t) for arm, t in times.items()}
    result = {
        "in_process_p50_ms": p50["in process"],
        "served_p50_ms": p50["served"],
        "added_ms": p50["served"] - p50["in process"],
        # the same difference block by block (the same sentences, next to each other in time): its spread
        # shows how far one invocation's figure can be trusted on a noisy machine
        "added_by_block_ms": _spread(by_block["served"]),
        "http_client_p50_ms": p50["http.client"],
        "added_with_http_client_ms": p50["http.client"] - p50["in process"],
        "added_with_http_client_by_block_ms": _spread(by_block["http.client"]),
    }
    print("RESULT " + json.dumps(result), flush=True)


def _timed(run, *args) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def _spread(values: list[float]) -> list[float]:
    return [min(values), statistics.median(values), max(values)]


def server(
    model_dir: str, dev_file: str, threads: int, clients: int, requests: int, max_seconds: float, sentences: int
) -> list[dict]:
    """``nasty-train serve`` on a free loopback port: one client, then ``clients`` at once; the requests cycle
    through the first ``sentences`` sentences, those the in-process arms time. Then ``added_latency``, whose
    figures join the one-client phase's."""
    port = _free_port()
    command = [*NASTY, "serve", "--model_dir", model_dir, "--port", str(port), "--threads", str(threads)]
    process = subprocess.Popen(command, env=_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or process.poll() is not None:
                raise SystemExit(f"the server did not start:\n{process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        words = [s.words for s in _sentences(dev_file)][:sentences]
        _clients(port, words, 1, 20, max_seconds)  # warm-up
        alone, together = (_clients(port, words, n, requests, max_seconds) for n in (1, clients))
        added = _worker(
            threads,
            "added_latency",
            model_dir=model_dir,
            dev_file=dev_file,
            port=port,
            threads=threads,
            sentences=sentences,
        )
        return [{**alone, **added}, together]
    finally:
        process.terminate()
        process.wait(timeout=60)


def served(
    model_dir: str,
    dev_file: str,
    threads: int = 2,
    clients: int = 8,
    requests: int = 500,
    max_seconds: float = 60.0,
    sentences: int = 500,
) -> None:
    """The server phases of ``run`` alone, for one model directory; prints them as JSON.

    Args:
        model_dir: A model directory (``fit``'s RUN/model, ``export``'s or ``quantize``'s output).
        dev_file: CoNLL-U file whose first ``sentences`` sentences the requests carry.
        threads: CPU threads of the server and of the in-process tagger it is compared with.
        clients: Concurrent clients of the second phase.
        requests: Requests per phase (one sentence each).
        max_seconds: Most seconds per phase.
        sentences: Sentences sent in turn, and tagged in process to measure what the server adds.
    """
    print(f"CPU: {_cpu()}; {threads} threads")
    for phase in server(model_dir, dev_file, threads, clients, requests, max_seconds, sentences):
        print(json.dumps(phase), flush=True)


def _cpu() -> str:
    from nasty_lightning.modelling.precision import cpu_info

    name, flags = cpu_info()
    shown = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8"})
    return f"{name}, {os.cpu_count()} CPUs, flags: {' '.join(shown)}"


def run(
    model_dir: str,
    dev_file: str,
    sentences: int = 500,
    threads: int = 2,
    clients: int = 8,
    requests: int = 500,
    max_seconds: float = 60.0,
    roberta: bool = True,
    keep: str | None = None,
) -> None:
    """Every arm on the fine-tuned model, then on roberta-base's shape, then the server; prints the tables.

    Args:
        model_dir: A fine-tuned model directory (``fit``'s RUN/model).
        dev_file: Labelled CoNLL-U file: latency over its first sentences, throughput and accuracy over all.
        sentences: Sentences timed one by one (batch of one) per arm.
        threads: CPU threads of every arm and of the server.
        clients: Concurrent clients of the second server phase.
        requests: Requests per server phase (one sentence each, through the first ``sentences`` in turn: with
            as many requests as sentences, the single client sends the sentences the in-process arms time).
        max_seconds: Most seconds per server phase.
        roberta: Also measure the randomly initialised roberta-base-shaped model.
        keep: Folder to keep the quantized and ONNX models in (default: a temporary folder, removed).
    """
    from nasty_lightning.modelling.precision import cpu_has_native_bf16

    tmp = Path(keep or tempfile.mkdtemp(prefix="bench-inference-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {_cpu()}; {threads} threads")
    models = {"fine-tuned": model_dir}
    if roberta:
        _worker(threads, "random_roberta", model_dir=model_dir, output_dir=tmp / "roberta")
        models["roberta-base shape (random)"] = str(tmp / "roberta")
    rows, dirs = [], {}
    for name, path in models.items():
        slug = "roberta" if path != model_dir else "model"
        int8 = tmp / f"{slug}-int8"
        quantize = [
            *NASTY,
            "quantize",
            "--model_dir",
            path,
            "--calibration_file",
            dev_file,
            "--output_dir",
            str(int8),
            "--threads",
            str(threads),
            "--force",
            "true",
        ]
        done = subprocess.run(quantize, env=_env(threads), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"quantize failed:\n{done.stderr[-3000:]}")
        print(f"$ nasty-train quantize --model_dir {path} ...\n{done.stdout}")
        _worker(threads, "float_onnx", model_dir=path, output_dir=tmp / f"{slug}-onnx32")
        arms = {
            "torch float32": (path, False),
            "onnx float32": (str(tmp / f"{slug}-onnx32"), False),
            "onnx int8": (str(int8), False),
        }
        if cpu_has_native_bf16():
            arms["torch bf16"] = (path, True)
        dirs[name] = {"float32": path, "int8": str(int8)}
        for arm, (arm_dir, bf16) in arms.items():
            result = _worker(
                threads,
                "latency",
                model_dir=arm_dir,
                dev_file=dev_file,
                sentences=sentences,
                threads=threads,
                bf16=bf16,
            )
            size = sum(f.stat().st_size for f in Path(arm_dir).rglob("*") if f.is_file())
            rows.append({"model": name, "arm": arm, "size_mb": size / 1e6, **result})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | arm | size MB | batch-of-one p50 ms | p95 ms | sentences/s (batches of 64) | accuracy |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        accuracy = f"{100 * r['accuracy']:.2f}" if r["model"] == "fine-tuned" else "(random)"
        print(
            f"| {r['model']} | {r['arm']} | {r['size_mb']:.1f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['sentences_per_second']:.0f} | {accuracy} |"
        )
    server_rows = []
    for name, kinds in dirs.items():
        for kind, path in kinds.items():
            if name != "fine-tuned" and kind != "int8":
                continue
            arm = "torch float32" if kind == "float32" else "onnx int8"
            for phase in server(path, dev_file, threads, clients, requests, max_seconds, sentences):
                server_rows.append({"model": name, "arm": arm, **phase})
                print(json.dumps(server_rows[-1]), flush=True)
    print(
        "\n| model | arm | clients | requests/s | p50 ms | p95 ms | added to p50 (in-process, served; by block "
        "min/median/max) | added with http.client |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in server_rows:
        over = with_http_client = ""
        if s["clients"] == 1:
            over = (
                f"{s['added_ms']:+.2f} ms ({s['in_process_p50_ms']:.2f}, {s['served_p50_ms']:.2f}; blocks "
                f"{'/'.join(f'{x:+.2f}' for x in s['added_by_block_ms'])})"
            )
            with_http_client = (
                f"{s['added_with_http_client_ms']:+.2f} ms (blocks "
                f"{'/'.join(f'{x:+.2f}' for x in s['added_with_http_client_by_block_ms'])})"
            )
        print(
            f"| {s['model']} | {s['arm']} | {s['clients']} | {s['requests_per_second']:.1f} | {s['p50_ms']:.2f} | "
            f"{s['p95_ms']:.2f} | {over} | {with_http_client} |"
        )
    if keep is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    commands = {"run": run, "quantizers": quantizers, "served": served}
    workers = {
        "latency": latency,
        "float_onnx": float_onnx,
        "random_roberta": random_roberta,
        "added_latency": added_latency,
    }
    auto_cli({**commands, **workers}, as_positional=False)
