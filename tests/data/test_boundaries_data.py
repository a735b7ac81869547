"""Data and model options at their boundaries: one clear line before any work, never a traceback later, and
never a silent acceptance (a repeated validation file, all-zero loss weights, malformed NER tags, more
augmented copies than memory holds); a sampling temperature near 0 and a warm start whose columns change
order do what they say."""

from __future__ import annotations

import pytest
import torch
from clirun import fit_args

from nasty_lightning.commands.cli import main
from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.data.sampling import temperature_draws
from nasty_lightning.errors import DataError, UserError
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.training.module import TokenTagger


def test_the_same_validation_file_twice_is_refused(tiny_bert, toy_treebank):
    dev = toy_treebank["dev"]
    for again in (dev, dev.parent / "." / dev.name):  # the same file, however it is spelt
        with pytest.raises(UserError, match=f"--data.val_file names {again} more than once"):
            TaggingDataModule(str(toy_treebank["train"]), [str(dev), str(again)], model_name=str(tiny_bert))


def test_a_sampling_temperature_near_zero_gives_the_largest_file_the_epoch():
    assert temperature_draws([100, 10], 1e-9) == [110, 1]  # each file keeps at least one sentence
    assert temperature_draws([64, 64], 1e-9) == [64, 64]
    assert temperature_draws([900, 100], 5) == [608, 392]  # as n ** (1 / T) gives them


def test_loss_weights_that_are_all_zero_are_refused(tiny_bert):
    labels = {"upos": ["NOUN", "VERB"], "xpos": ["NN", "VB"]}
    with pytest.raises(UserError, match="gives every column weight 0: nothing would be trained"):
        TokenTagger(str(tiny_bert), labels, loss_weights={"upos": 0, "xpos": 0.0})
    TokenTagger(str(tiny_bert), labels, loss_weights={"upos": 0})  # one column trained: allowed


MISC_NER = "1\tAnn\tAnn\tPROPN\t_\t_\t0\troot\t_\tNER=B-PER\n2\truns\trun\tVERB\t_\t_\t1\tdep\t_\t{}\n\n"


@pytest.mark.parametrize("misc", ["NER=B-", "NER=X-PER", "NER=", "NER=PER", "NER=o"])
def test_a_malformed_ner_tag_in_misc_is_an_error_at_its_line(tmp_path, misc):
    path = tmp_path / "ner.conllu"
    path.write_text(MISC_NER.format(misc))
    with pytest.raises(DataError, match=f"^{path}:2: malformed NER tag {misc[4:]!r}: expected O, or B-TYPE"):
        read_sentences(path)


def test_a_malformed_tag_of_an_iob2_file_is_an_error_at_its_line(tmp_path):
    path = tmp_path / "ner.iob2"
    path.write_text("1\tAnn\tB-PER\t_\t_\n2\truns\tO\t_\t_\n\n1\tBob\tI-\t_\t_\n\n")
    with pytest.raises(DataError, match=f"^{path}:4: malformed NER tag 'I-'"):
        read_sentences(path)


def test_more_augmented_copies_than_memory_holds_are_refused_at_once(tiny_bert, toy_treebank):
    with pytest.raises(UserError, match=r"^--data.augment 1000000000 makes [\d,]+ words of copies of the [\d,]+ "):
        TaggingDataModule(
            str(toy_treebank["train"]), str(toy_treebank["dev"]), model_name=str(tiny_bert), augment=10**9
        )


@pytest.fixture(scope="module")
def upos_xpos(tiny_bert, morphology, tmp_path_factory):
    """A run of [upos, xpos]: its best checkpoint and its exported model."""
    root = tmp_path_factory.mktemp("upos_xpos")
    main(fit_args(tiny_bert, morphology, root, "--data.label_column", "[upos, xpos]", "--trainer.max_epochs", "1"))
    return root


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("source", ["checkpoints/best.ckpt", "model"])
def test_a_warm_start_matches_the_classifier_by_column_name(upos_xpos, source):
    saved = torch.load(upos_xpos / "checkpoints" / "best.ckpt", weights_only=True)
    labels, state = saved["TaggingDataModule"]["labels"], saved["state_dict"]
    xpos = {"weight": state["heads.xpos.weight"], "bias": state["heads.xpos.bias"]}
    swapped = TokenTagger(str(upos_xpos / source), {"xpos": labels["xpos"], "upos": labels["upos"]})
    assert torch.equal(swapped.model.classifier.weight, xpos["weight"])  # the source's xpos, not its upos
    assert torch.equal(swapped.model.classifier.bias, xpos["bias"])
    assert torch.equal(swapped.heads["upos"].weight, state["model.classifier.weight"])
    alone = TokenTagger(str(upos_xpos / source), {"xpos": labels["xpos"]})
    assert torch.equal(alone.model.classifier.weight, xpos["weight"])


@pytest.mark.slow
@pytest.mark.integration
def test_fit_tells_a_single_column_model_its_column(upos_xpos, tiny_bert, morphology, tmp_path):
    best = upos_xpos / "checkpoints" / "best.ckpt"
    xpos = torch.load(best, weights_only=True)["state_dict"]["heads.xpos.weight"]
    args = ("--data.label_column", "xpos", "--model.model_name", best, "--model.learning_rate", "1e-12")
    main(fit_args(tiny_bert, morphology, tmp_path, *args, "--trainer.max_epochs", "1"))
    warm = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert torch.allclose(warm["model.classifier.weight"], xpos, atol=1e-6)  # trained 8 steps at 1e-12
