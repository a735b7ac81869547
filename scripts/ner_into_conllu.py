"""Put the entity tags of a NER file into the CoNLL-U treebank its sentences come from, as ``NER=`` items in MISC:
a file to train entities together with the treebank's columns (``--data.label_column '[ner, upos]'``).

    python scripts/ner_into_conllu.py --ner_file runs/uner/en_ewt-ud-dev-first1600.iob2 \
        --conllu_file data/ud/en_ewt/en_ewt-ud-dev.conllu --out runs/uner/en_ewt-ud-dev-first1600.conllu

Universal NER annotates the sentences of UD treebanks and keeps their ``# sent_id``: each sentence of ``ner_file``
is looked up in ``conllu_file`` by it, and written as the treebank has it, byte for byte, but for the MISC column
of its words, which gains (or replaces) ``NER=<tag>``; sentences come in the order of ``ner_file``. Tags in IOB1 or
BIOES are written as IOB2 (as training reads them). Where the two files split a sentence into different words
(treebank releases differ) and every tag of it is ``O``, its words all take ``O``; any other difference, and a
sentence the treebank lacks, stops the script with the sentence's line in ``ner_file``. Prints the counts.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import auto_cli

from nasty_lightning.formats.conllu import read_sentences, with_misc_value
from nasty_lightning.formats.outputs import write_atomic


def treebank_blocks(conllu_file: str) -> dict[str, list[str]]:
    """The lines of each sentence of a CoNLL-U file, by its ``# sent_id``."""
    blocks = {}
    for block in Path(conllu_file).read_text(encoding="utf-8").split("\n\n"):
        lines = block.strip("\n").split("\n")
        ids = [line.removeprefix("# sent_id = ") for line in lines if line.startswith("# sent_id = ")]
        if ids:
            blocks[ids[0]] = lines
    return blocks


def is_word(line: str) -> bool:
    """Whether a CoNLL-U line is a syntactic word (not a comment, a multiword token or an empty node)."""
    return not line.startswith("#") and line.split("\t", 1)[0].isdigit()


def with_tags(lines: list[str], tags: list[str]) -> list[str]:
    """A treebank sentence's lines with each word's MISC holding its tag."""
    tags_left = iter(tags)
    out = []
    for line in lines:
        if is_word(line):
            columns = line.split("\t")
            columns[9] = with_misc_value(columns[9], "NER", next(tags_left))
            line = "\t".join(columns)
        out.append(line)
    return out


def main(ner_file: str, conllu_file: str, out: str) -> dict[str, int]:
    """
    Args:
        ner_file: Entity tags: a Universal NER (IOB2) file, or a CoNLL-U file with ``NER=`` in MISC, whose
            sentences have ``# sent_id`` comments.
        conllu_file: The treebank file that holds those sentences.
        out: The CoNLL-U file to write.
    """
    treebank = treebank_blocks(conllu_file)
    blocks, retokenized = [], 0
    for sentence in read_sentences(ner_file):
        where = f"{ner_file}:{sentence.line}"
        sent_id = sentence.tokens.metadata.get("sent_id")
        if sent_id is None:
            raise SystemExit(f"{where}: the sentence has no '# sent_id' comment to find it in {conllu_file} by")
        if sent_id not in treebank:
            raise SystemExit(f"{where}: {conllu_file} has no sentence {sent_id!r}")
        lines, tags = treebank[sent_id], sentence.labels("ner")
        words = [line.split("\t")[1] for line in lines if is_word(line)]
        if words != sentence.words:
            if any(tag != "O" for tag in tags):
                raise SystemExit(
                    f"{where}: sentence {sent_id!r} has other words in {conllu_file} ({' '.join(words)}), and "
                    "entities: tag it by hand"
                )
            tags, retokenized = ["O"] * len(words), retokenized + 1
        blocks.append("\n".join(with_tags(lines, tags)) + "\n\n")
    write_atomic(out, "".join(blocks))
    counts = {"sentences": len(blocks), "other words, all O": retokenized}
    print(f"{out}: {counts}")
    return counts


if __name__ == "__main__":
    auto_cli(main, as_positional=False)
