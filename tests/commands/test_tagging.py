"""What ``nasty-train tag`` says of its work, and a missing input file."""

from __future__ import annotations

import pytest

from nasty_lightning.commands.tagging import Timed
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import read_sentences


class Echo:
    columns = ["upos"]

    def predict(self, sentences: list[list[str]], progress: bool = False) -> dict[str, list[list[str]]]:
        return {"upos": [["X"] * len(s) for s in sentences]}


@pytest.mark.parametrize(
    "sentences, said",
    [([["Hi"]], "tagged 1 sentence (1 word) in"), ([["Hi", "!"], ["Yo"]], "tagged 2 sentences (3 words) in")],
)
def test_the_summary_counts_in_words_a_user_reads(sentences, said):
    timed = Timed(Echo())
    timed.predict(sentences)
    assert timed.summary().startswith(said)


def test_a_missing_file_is_named_without_a_line_number(tmp_path):
    with pytest.raises(UserError) as error:
        read_sentences(tmp_path / "nope.conllu")
    assert str(error.value) == f"cannot read {tmp_path / 'nope.conllu'} (No such file or directory)"
