"""Shared fixtures: tiny offline models and a toy treebank."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

# pytest-xdist's workers share the cores: each worker, and every command it starts, computes on its share of them
# (PyTorch's default, a thread per core in every worker, oversubscribes the CPU and slows the whole suite).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

# Imported here, before any test captures output: Lightning's log handler keeps the stderr of its import,
# and a test that imported it first would find "Seed set to 42" in its captured errors.
import lightning.pytorch  # noqa: F401, E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_bert, build_roberta, build_xlmr  # noqa: E402
from toy_data import toy_sentences, write_conllu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Where the README tells users to put the data (data/, a link to it), else the workspace's ../shared/data.
FIXTURES = Path(__file__).parent / "fixtures"
V1_MODEL = FIXTURES / "v1_upos" / "model"  # a tiny BERT tagger of UPOS, trained on the toy data, as export wrote it
SHARED_DATA = next((d for d in (ROOT / "data", ROOT.parent / "shared" / "data") if d.is_dir()), ROOT / "data")


def pytest_configure(config):
    """Keep the order below: pytest-xdist's ``loadscope`` otherwise hands out modules by their number of tests,
    which puts the long modules of one or two tests (DDP, the real MiniLM) last."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    """The heaviest modules first (those marked integration whole, then by their number of slow tests), so that
    under ``--dist loadscope`` no worker is left alone with a long module at the end while the other waits."""
    slow = Counter(getattr(item, "module", None) for item in items if item.get_closest_marker("slow"))

    def weight(item) -> tuple[bool, int]:
        module = getattr(item, "module", None)
        marks = getattr(module, "pytestmark", [])
        whole = any(m.name == "integration" for m in (marks if isinstance(marks, list) else [marks]))
        return (not whole, -slow[module])

    items.sort(key=weight)  # stable: each module's tests keep their order


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
