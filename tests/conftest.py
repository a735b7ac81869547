"""Shared fixtures: tiny offline models and a toy treebank."""

from __future__ import annotations

import sys
from pathlib import Path

# Imported here, before any test captures output: Lightning's log handler keeps the stderr of its import,
# and a test that imported it first would find "Seed set to 42" in its captured errors.
import lightning.pytorch  # noqa: F401
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_bert, build_roberta, build_xlmr  # noqa: E402
from toy_data import toy_sentences, write_conllu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Where the README tells users to put the data (data/, a link to it), else the workspace's ../shared/data.
FIXTURES = Path(__file__).parent / "fixtures"
V1_MODEL = FIXTURES / "v1_upos" / "model"  # a tiny BERT tagger of UPOS, trained on the toy data, as export wrote it
SHARED_DATA = next((d for d in (ROOT / "data", ROOT.parent / "shared" / "data") if d.is_dir()), ROOT / "data")


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory):
    """A HOME of the suite's own, so the default encoding cache (~/.cache) of in-process and subprocess
    runs stays out of the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """In-process ``main(args)`` runs pass their own arguments; pytest's in ``sys.argv`` would only trigger
    Lightning's warning about getting both."""
    monkeypatch.setattr(sys, "argv", ["nasty-train"])


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    return build_roberta(tmp_path_factory.mktemp("roberta"))


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> Path:
    return build_xlmr(tmp_path_factory.mktemp("xlmr"))


def _toy_files(root: Path, morphology_columns: bool = False) -> dict[str, Path]:
    """Train (64 sentences) and dev (17: not a multiple of any batch size used) files."""
    return {
        "train": write_conllu(root / "train.conllu", toy_sentences(64, seed=0), morphology_columns),
        "dev": write_conllu(root / "dev.conllu", toy_sentences(17, seed=1), morphology_columns),
    }


@pytest.fixture(scope="session")
def toy_treebank(tmp_path_factory) -> dict[str, Path]:
    """The toy treebank with UPOS only."""
    return _toy_files(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def morphology(tmp_path_factory) -> dict[str, Path]:
    """The toy treebank with LEMMA, XPOS and FEATS too."""
    return _toy_files(tmp_path_factory.mktemp("morph"), morphology_columns=True)
