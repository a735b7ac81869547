"""Models offline: a model that cannot load without the hub fails at once in one line, with no retries.

Every test runs against a fake hub: the HTTP client of ``huggingface_hub`` is replaced by one whose
transport records each request and then refuses the connection (as an unreachable host does) or answers
404, so no test touches the network, and the number of requests shows whether anything was retried
(``transformers`` alone makes a first try and 5 retries, 23 s of backoff, for an unreachable hub).
``HF_HUB_OFFLINE`` is read by ``huggingface_hub`` when it is imported, so the tests set the constant it
fills (``huggingface_hub.constants.HF_HUB_OFFLINE``), which ``transformers`` reads as well.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
from clirun import fit_args
from huggingface_hub import constants, get_session, set_client_factory
from huggingface_hub.utils import _http

from nasty_lightning.commands.cli import main
from nasty_lightning.data.encoding import load_tokenizer
from nasty_lightning.errors import UserError
from nasty_lightning.formats.presets import cached_model_dir, locate_model
from nasty_lightning.training.module import TokenTagger

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TAGS = ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]


class FakeHub:
    """Stands in for huggingface_hub's HTTP client: records requests, then refuses them or answers 404."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.answer: int | None = None  # None: connection refused; else this HTTP status
        # The HTTP library huggingface_hub uses (httpx2, or httpx in older versions). Found here, not in
        # client(), which get_session() calls while holding its lock.
        self.http = importlib.import_module(type(get_session()).__module__.split(".")[0])

    def file_requests(self) -> list[str]:
        """Requests for files of a model (not huggingface_hub's own once-a-day telemetry, which it sends when it
        first builds request headers: GET /api/agent-harnesses, 3 s timeout, never retried)."""
        return [r for r in self.requests if "/resolve/" in r]

    def client(self):
        """A client like huggingface_hub's own (with its offline check), on a transport that records requests."""
        http = self.http

        def handle(request):
            self.requests.append(f"{request.method} {request.url}")
            if self.answer is None:
                raise http.ConnectError("[Errno -2] Name or service not known", request=request)
            return http.Response(self.answer, request=request)

        return http.Client(
            transport=http.MockTransport(handle),
            event_hooks={"request": [_http.hf_request_event_hook]},
            follow_redirects=True,
        )


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache, offline mode off, and a fake hub that cannot be reached."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake = FakeHub()
    set_client_factory(fake.client)
    yield fake
    set_client_factory(_http.default_client_factory)


@pytest.fixture
def offline(hub, monkeypatch):
    """``HF_HUB_OFFLINE=1``, as huggingface_hub reads it at import."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub


def last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Retrying" not in err, err
    return err.strip().splitlines()[-1]


def cache_model(source: Path, repo_id: str, files: list[str] | None = None) -> Path:
    """Put a model folder into the (fake) Hugging Face cache as the main revision of ``repo_id``."""
    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for path in source.iterdir():
        if files is None or path.name in files:
            shutil.copy(path, snapshot / path.name)
    return snapshot


def fit_roberta_error(toy_treebank, tmp_path, capsys) -> str:
    """The one-line error of ``fit`` with the hub preset roberta_base (exit status 2)."""
    with pytest.raises(SystemExit) as exit_:
        main(fit_args("roberta_base", toy_treebank, tmp_path / "run"))
    assert exit_.value.code == 2
    return last_error(capsys)


def test_offline_mode_fails_at_once_without_asking_the_hub(offline, toy_treebank, tmp_path, capsys):
    assert fit_roberta_error(toy_treebank, tmp_path, capsys) == (
        "nasty-train: error: cannot load model 'roberta_base' (FacebookAI/roberta-base): not in the local Hugging "
        "Face cache and HF_HUB_OFFLINE is set, so the hub is not asked; offline, give a local model directory, "
        "a checkpoint, or the preset minilm"
    )
    assert offline.requests == []


def test_unreachable_hub_fails_after_one_request(hub, toy_treebank, tmp_path, capsys):
    assert fit_roberta_error(toy_treebank, tmp_path, capsys) == (
        "nasty-train: error: cannot load model 'roberta_base' (FacebookAI/roberta-base): not in the local Hugging "
        f"Face cache and the hub cannot be reached ({constants.ENDPOINT}: [Errno -2] Name or service not known); "
        "offline, give a local model directory, a checkpoint, or the preset minilm"
    )
    # one HEAD, as from_pretrained's first, and no retry
    assert hub.file_requests() == [f"HEAD {constants.ENDPOINT}/FacebookAI/roberta-base/resolve/main/config.json"]
    assert len(hub.requests) == len(set(hub.requests))


def test_tokenizer_of_a_hub_id_fails_the_same_way(hub):
    with pytest.raises(UserError) as err:
        load_tokenizer("someone/uncached-model")
    message = str(err.value)
    assert message.startswith("cannot load model 'someone/uncached-model': no such local directory or checkpoint, ")
    assert "not in the local Hugging Face cache, and the hub cannot be reached" in message
    assert "a preset: minilm, roberta_base, " in message and "(offline, only minilm: " in message
    assert len(hub.file_requests()) == 1


def test_a_hub_that_answers_gets_the_hub_id(hub):
    """Online, the hub id goes to from_pretrained as before (which reports the hub's 404 itself)."""
    hub.answer = 404
    assert locate_model("someone/some-model") == "someone/some-model"
    assert locate_model("roberta_base") == "FacebookAI/roberta-base"
    assert len(hub.file_requests()) == 2


@pytest.mark.slow
def test_a_local_model_directory_trains_without_the_hub(offline, tiny_bert, toy_treebank, tmp_path):
    main(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "1"))
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert offline.requests == []


def test_a_cached_hub_model_loads_without_the_hub(hub, tiny_bert):
    snapshot = cache_model(tiny_bert, "someone/tiny-bert")
    assert locate_model("someone/tiny-bert") == str(snapshot)
    assert load_tokenizer("someone/tiny-bert").is_fast
    model = TokenTagger(model_name="someone/tiny-bert", labels=TAGS)
    assert model.model.config.id2label[3] == "NOUN" and model.hparams.model_name == "someone/tiny-bert"
    assert hub.requests == []


def test_a_partly_cached_model_is_not_used_and_whole_ones_are_named(offline, tiny_bert):
    cache_model(tiny_bert, "someone/tiny-bert")
    cache_model(tiny_bert, "someone/config-only", files=["config.json", "tokenizer.json", "tokenizer_config.json"])
    assert cached_model_dir("someone/config-only") is None  # no weights
    with pytest.raises(UserError) as err:
        locate_model("someone/config-only")
    assert str(err.value).endswith("; models in the local Hugging Face cache: someone/tiny-bert")
    assert offline.requests == []


def test_a_name_that_is_neither_a_path_nor_a_hub_id(hub):
    with pytest.raises(UserError) as err:
        locate_model("/no/such/model-dir")
    assert str(err.value).startswith(
        "cannot load model '/no/such/model-dir': no such local directory or checkpoint, and not a Hugging Face hub id; "
    )
    assert hub.requests == []
