"""What ``quiet`` silences: only the deprecation notices it names, each from the module that makes the call."""

from __future__ import annotations

import warnings

import pytest

from nasty_lightning.commands.quiet import quiet

LIGHTNING_CLI = ("lightning/pytorch/cli.py", "lightning.pytorch.cli")


@pytest.fixture(autouse=True)
def _undo_quiet(monkeypatch):
    """What ``quiet`` sets besides filters goes back after each test."""
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)


def _shown(message: str, category: type[Warning], where: tuple[str, str]) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet()
        warnings.warn_explicit(message, category, where[0], 1, module=where[1])
    return bool(caught)


@pytest.mark.parametrize(
    "message, category, where",
    [
        ("\n    skip_none parameter was deprecated in v4.49.0 and will be removed", DeprecationWarning, LIGHTNING_CLI),
        ("\n    ``instantiate_classes`` was deprecated in v4.49.0", DeprecationWarning, LIGHTNING_CLI),
        (
            "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`",
            FutureWarning,
            ("lightning/pytorch/utilities/_pytree.py", "lightning.pytorch.utilities._pytree"),
        ),
    ],
)
def test_the_deprecations_of_lightnings_own_calls_are_silenced(message, category, where):
    assert not _shown(message, category, where)


@pytest.mark.parametrize(
    "message, category, where",
    [
        ("`torch_dtype` is deprecated! Use `dtype` instead!", FutureWarning, ("transformers/x.py", "transformers.x")),
        ("Trainer.foo is deprecated and will be removed in 2.8", DeprecationWarning, LIGHTNING_CLI),
        ("The bar parameter was deprecated in v4.60.0", DeprecationWarning, LIGHTNING_CLI),
        ("\n    skip_none parameter was deprecated in v4.49.0", DeprecationWarning, ("ours.py", "nasty_lightning.x")),
    ],
)
def test_any_other_deprecation_still_shows(message, category, where):
    assert _shown(message, category, where)
