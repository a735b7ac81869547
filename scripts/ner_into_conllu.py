"""Put the entity tags of a NER file into the CoNLL-U treebank its sentences come from, as ``NER=`` items in MISC:
a file to train entities together with the treebank's columns (``--data.label_column '[ner, upos]'``).

    python scripts/ner_into_conllu.py --ner_file runs/uner/en_ewt-ud-dev-first1600.iob2 \
        --conllu_file data/ud/en_ewt/en_ewt-ud-dev.conllu --out runs/uner/en_ewt-ud-dev-first1600.conllu

Universal NER annotates the sentences of UD treebanks and keeps their ``# sent_id``: each sentence of ``ner_file``
is looked up in ``conllu_file`` by it, and written as the treebank has it, byte for byte, but for the MISC column
of its words, which gains (or replaces) ``NER=<tag>``; sentences come in the order of ``ner_file``. Tags in IOB1 or
BIOES are written as IOB2 (as training reads them). Where the two files split a sentence into different words
(treebank releases differ) and every tag of it is ``O``, its words all take ``O``; any other difference, and a
sentence the treebank lacks, stops the script with the sentence's line in ``ner_file``; both files are read and
checked as training reads them (a malformed line stops it with its line). Prints the counts.
"""

from __future__ import annotations

from jsonargparse import auto_cli

from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import MISC_NER, Sentence, read_lines, read_sentences, with_misc_value
from nasty_lightning.formats.outputs import write_atomic


def sentence_lines(lines: list[str], sentence: Sentence, tags: list[str]) -> list[str]:
    """A treebank sentence's lines (``lines``: the whole file's), from its first to the blank line after it, with
    each word's MISC holding its tag."""
    end = sentence.word_lines[-1]
    while end < len(lines) and lines[end].strip():  # multiword tokens or empty nodes after the last word
        end += 1
    block = lines[sentence.line - 1 : end]
    for number, tag in zip(sentence.word_lines, tags, strict=True):
        columns = block[number - sentence.line].split("\t")
        columns[9] = with_misc_value(columns[9], MISC_NER, tag)
        block[number - sentence.line] = "\t".join(columns)
    return block


def main(ner_file: str, conllu_file: str, out: str) -> dict[str, int]:
    """
    Args:
        ner_file: Entity tags: a Universal NER (IOB2) file, or a CoNLL-U file with ``NER=`` in MISC, whose
            sentences have ``# sent_id`` comments.
        conllu_file: The treebank file that holds those sentences.
        out: The CoNLL-U file to write.
    """
    try:
        treebank = {s.tokens.metadata.get("sent_id"): s for s in read_sentences(conllu_file)}
        lines = [line for _, line in read_lines(conllu_file)]
        entities = read_sentences(ner_file)
    except UserError as err:
        raise SystemExit(str(err)) from None
    blocks, retokenized = [], 0
    for sentence in entities:
        where = f"{ner_file}:{sentence.line}"
        sent_id = sentence.tokens.metadata.get("sent_id")
        if sent_id is None:
            raise SystemExit(f"{where}: the sentence has no '# sent_id' comment to find it in {conllu_file} by")
        if sent_id not in treebank:
            raise SystemExit(f"{where}: {conllu_file} has no sentence {sent_id!r}")
        words, tags = treebank[sent_id].words, sentence.labels("ner")
        if words != sentence.words:
            if any(tag != "O" for tag in tags):
                raise SystemExit(
                    f"{where}: sentence {sent_id!r} has other words in {conllu_file} ({' '.join(words)}), and "
                    "entities: tag it by hand"
                )
            tags, retokenized = ["O"] * len(words), retokenized + 1
        blocks.append("\n".join(sentence_lines(lines, treebank[sent_id], tags)) + "\n\n")
    write_atomic(out, "".join(blocks))
    counts = {"sentences": len(blocks), "other words, all O": retokenized}
    print(f"{out}: {counts}")
    return counts


if __name__ == "__main__":
    auto_cli(main, as_positional=False)
