"""``nasty-train tag``: fill the predicted columns of a CoNLL-U file, or tag plain text.

CoNLL-U input is rewritten line by line: only the predicted columns of syntactic-word lines change;
comments, multiword-token lines, empty nodes, other columns and trailing spaces (which the reader
accepts in MISC only) are kept byte for byte (the ``conllu`` package's serializer would drop
comments and strip spaces). Output is UTF-8 with LF line ends, without a BOM, whatever the input had.
The output file is written whole or not at all, so ``--output`` may name the input file itself.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import (
    CONLLU_FIELDS,
    IOB2_FIELDS,
    MISC_NER,
    decode_lines,
    fields_for,
    read_lines,
    read_sentences,
    with_misc_value,
)
from nasty_lightning.formats.ner_files import CONLL2003_FIELDS
from nasty_lightning.formats.outputs import check_output, write_atomic
from nasty_lightning.formats.texts import LABEL_SEPARATOR, is_text_file, read_texts, write_texts
from nasty_lightning.labels.heads import is_sentence_column


class Predictor(Protocol):
    """What tagging a file needs of ``inference.Tagger`` (named apart: ``--help`` should not import PyTorch)."""

    columns: list[str]

    def predict(self, sentences: list[list[str]], progress: bool = False) -> dict[str, list[list[str]]]: ...


TEXT_SUFFIXES = {".txt", ".text"}


@dataclass
class Timed:
    """A ``Predictor`` that counts the sentences and words it tags, and the seconds that takes."""

    tagger: Predictor
    sentences: int = 0
    words: int = 0
    seconds: float = 0.0

    @property
    def columns(self) -> list[str]:
        return self.tagger.columns

    def predict(self, sentences: list[list[str]], progress: bool = False) -> dict[str, list[list[str]]]:
        start = time.perf_counter()
        predicted = self.tagger.predict(sentences, progress)
        self.seconds += time.perf_counter() - start
        self.sentences += len(sentences)
        self.words += sum(map(len, sentences))
        return predicted

    def summary(self) -> str:
        rate = f", {self.words / self.seconds:,.0f} words/s" if self.seconds > 0 else ""
        return (
            f"tagged {_count(self.sentences, 'sentence')} ({_count(self.words, 'word')}) in {self.seconds:.2f} s{rate}"
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def tag(
    model_dir: str,
    input: str = "-",
    output: str = "-",
    batch_size: int = 64,
    threads: int | None = None,
    precision: Literal["float32", "bf16", "auto"] = "float32",
    text_column: str = "text",
    zero_shot_labels: list[str] | dict[str, str] | None = None,
    label_column: str = "label",
) -> None:
    """Tag a file with an exported model.

    CoNLL-U (or ``.iob2``) input comes back with the model's columns filled in and every other byte kept.
    Plain text (``.txt``, or standard input) has one sentence or paragraph per line; it is split into
    words (punctuation and English clitics such as n't and 's become words of their own, as in UD)
    and written as CoNLL-U. Blank lines are skipped, and each sentence's ``sent_id`` is the number of its
    input line (``# sent_id = 3`` for the third line, whether or not line 2 was blank), so the output
    lines up with the input. At the end, a line on standard error gives the sentences, words and seconds
    the model took (loading and reading not counted). A model that labels texts writes each label as a comment
    in CoNLL-U (``# genre = news``), and in a file of labelled texts (``.tsv``, ``.csv``, ``.jsonl``) fills its
    label column (added where the file lacks it), every other byte kept.

    Args:
        model_dir: Model directory written by ``fit`` (RUN/model) or ``nasty-train export``.
        input: File to tag; ``-`` reads plain text from standard input. In plain text, each non-blank line
            is a sentence whose sent_id is its line number, blank lines counted (# sent_id = 3 for line 3).
        output: File to write, whole or not at all (it may be the input file); ``-`` writes to standard output.
        batch_size: Sentences per forward pass.
        threads: CPU threads (default: the cores this process may use, at most 4).
        precision: The weights' type: float32 (as validation in fit scores the model); bf16, bfloat16, faster
            where the CPU computes it natively (AVX512-BF16, AMX; Arm BF16) and a word in a few thousand tagged
            differently (docs/benchmarks.md); auto, bf16 where native, float32 elsewhere. Quantized models: INT8.
        text_column: In a file of labelled texts (TSV, CSV, JSON Lines), the column or key of the text.
        zero_shot_labels: Label texts without training: ``--model_dir`` is then a pretrained sentence encoder
            (``minilm``, a hub id or a local directory), and each text gets the label whose name, or description
            (``{label: description}``), its embedding is most similar to (``eval --zero_shot_labels`` scores it).
        label_column: With ``--zero_shot_labels``: the column (or CoNLL-U comment) to write the labels in.
    """
    from nasty_lightning.inference.runtime import check_batch_size, use_threads  # here: --help needs no PyTorch
    from nasty_lightning.inference.tagger import Tagger

    check_batch_size(batch_size)
    threads = use_threads(threads)
    if output != "-":
        check_output(output, "--output")
    text_lines = None  # plain text is read before the model loads, so bad bytes are reported at once
    if input == "-":  # a lone CR, form feed or U+2028 ends a line too, as text-mode reading had it
        lines = decode_lines(sys.stdin.buffer.read(), "<stdin>")
        text_lines = [part for _, line in lines for part in line.splitlines() or [line]]  # blank lines too
    elif Path(input).suffix.lower() in TEXT_SUFFIXES:
        text_lines = [line for _, line in read_lines(input)]
    if zero_shot_labels is None:
        tagger = Timed(Tagger.load(model_dir, batch_size=batch_size, threads=threads, precision=precision))
    else:
        from nasty_lightning.inference.zero_shot import ZeroShotClassifier

        if not is_sentence_column(label_column):
            raise UserError(f"--label_column {label_column} is a word's column: zero-shot labelling labels texts")
        classifier = ZeroShotClassifier(model_dir, zero_shot_labels, batch_size=batch_size, label_column=label_column)
        tagger = Timed(classifier)
    if text_lines is not None:
        result = tag_text(tagger, text_lines)
    elif is_text_file(input):
        result = tag_texts(tagger, input, text_column)
    else:
        result = tag_conllu(tagger, input)
    if output == "-":
        sys.stdout.write(result)
    else:
        write_atomic(output, result)
    print(tagger.summary(), file=sys.stderr)


def tag_conllu(tagger: Predictor, path: str) -> str:
    """The file's text with the predicted columns of every syntactic word replaced (entity tags of a CoNLL-U
    file in MISC, as ``NER=`` items)."""
    fields = fields_for(path)
    in_misc = "ner" not in fields and "misc" in fields
    comments = [c for c in tagger.columns if is_sentence_column(c)]
    missing = [c for c in tagger.columns if c not in fields and not (c == "ner" and in_misc) and c not in comments]
    if missing:
        raise UserError(f"{path} has no {' or '.join(map(repr, missing))} column for the model's tags")
    sentences = read_sentences(path)
    lines = [line for _, line in read_lines(path)]
    predicted = tagger.predict([s.words for s in sentences], progress=True)
    # CoNLL-2003 lines are space-separated, without the ID the reader numbers words with
    separator, skipped = (" ", 1) if fields == CONLL2003_FIELDS else ("\t", 0)
    for name, by_sentence in predicted.items():
        if name in comments:
            continue
        to_misc = name == "ner" and in_misc
        column = fields.index("misc" if to_misc else name) - skipped
        for sentence, values in zip(sentences, by_sentence, strict=True):
            for number, value in zip(sentence.word_lines, values, strict=True):
                columns = lines[number - 1].split(separator)
                columns[column] = with_misc_value(columns[column], MISC_NER, value) if to_misc else value
                lines[number - 1] = separator.join(columns)
    for n in reversed(range(len(sentences))):  # from the end: an added comment moves the lines after it
        first_word = sentences[n].word_lines[0] - 1
        for name in reversed(comments):
            _set_comment(lines, sentences[n].line - 1, first_word, name, " ".join(predicted[name][n]))
    return "\n".join(lines)


def _set_comment(lines: list[str], start: int, end: int, name: str, value: str) -> None:
    """Write ``# name = value`` over that comment among ``lines[start:end]`` (a sentence's comments), or add it
    before ``lines[end]``, its first word."""
    for i in range(start, end):
        if lines[i].startswith("#") and lines[i][1:].split("=", 1)[0].strip() == name:
            lines[i] = f"# {name} = {value}"
            return
    lines.insert(end, f"# {name} = {value}")


def tag_texts(tagger: Predictor, path: str, text_column: str) -> str:
    """A TSV, CSV or JSON Lines file of texts with the label columns of a model that labels texts filled in."""
    words = [c for c in tagger.columns if not is_sentence_column(c)]
    if words:
        raise UserError(f"{path} holds texts, not words: the model tags {', '.join(words)} on words (give CoNLL-U)")
    sentences = read_texts(path, text_column, tuple(tagger.columns), label_required=False)
    predicted = tagger.predict([s.words for s in sentences], progress=True)
    labels = {c: [LABEL_SEPARATOR.join(values) or None for values in predicted[c]] for c in tagger.columns}
    return write_texts(path, sentences, labels)


def tag_text(tagger: Predictor, text_lines: list[str]) -> str:
    """CoNLL-U for plain text, one sentence per non-empty line, with the line's number as its ``sent_id``
    and ``SpaceAfter=No`` where it applies; entity tags go in MISC (``NER=``), or, from a model that tags
    entities only, IOB2."""
    fields = IOB2_FIELDS if tagger.columns == ["ner"] else CONLLU_FIELDS
    units = [(number, line.strip()) for number, line in enumerate(text_lines, start=1) if line.strip()]
    from nasty_lightning.formats.texts import word_spans

    spans = [word_spans(unit) for _, unit in units]
    predicted = tagger.predict([[w for w, _, _ in s] for s in spans], progress=True)
    out = []
    for n, ((number, unit), unit_spans) in enumerate(zip(units, spans, strict=True)):
        out += [f"# sent_id = {number}", f"# text = {unit}"]
        out += [f"# {c} = {' '.join(values[n])}" for c, values in predicted.items() if is_sentence_column(c)]
        for i, (word, _, end) in enumerate(unit_spans):
            row = dict.fromkeys(fields, "_")
            row.update(id=str(i + 1), form=word)
            row.update({c: values[n][i] for c, values in predicted.items() if not is_sentence_column(c)})
            if "misc" in row and end < len(unit) and not unit[end].isspace():
                row["misc"] = "SpaceAfter=No"
            if "ner" in row and "ner" not in fields:
                row["misc"] = with_misc_value(row["misc"], MISC_NER, row["ner"])
            out.append("\t".join(row[f] for f in fields))
        out.append("")
    return "\n".join(out) + "\n" if out else ""
