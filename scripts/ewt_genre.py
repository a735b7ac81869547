"""EWT genre: a real, offline sentence (and document) classification task made from UD English-EWT. Each
sentence's ``# sent_id = <genre>-<doc>-<n>`` names its source genre: answers, email, newsgroup, reviews or
weblog; the task is to tell the genre from the text alone.

    python scripts/ewt_genre.py --conllu_file ../shared/data/ud/en_ewt/en_ewt-ud-train.conllu --out runs/ewt_genre
    python scripts/ewt_genre.py --conllu_file ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu --out runs/ewt_genre

From ``<stem>.conllu`` this writes into ``--out`` (never inside the input's folder; an existing non-empty output
file is refused unless ``--overwrite``):

- ``<stem>-genre.tsv``: header ``text<TAB>label``, one row per sentence: its ``# text`` and its genre;
- ``<stem>-genre.conllu``: the input with ``# genre = <genre>`` after each ``# sent_id`` line, every other byte
  unchanged;
- ``<stem>-genre-docs.tsv``: header ``text<TAB>label``, one row per document (the sentences from one
  ``# newdoc`` line to the next, their texts joined with a space) and its genre, which must be the same for all
  its sentences (and the prefix of its ``# newdoc id``), else the script stops.

The TSVs are written by Python's ``csv`` module (tab delimiter, default quoting: texts with tabs or quotes are
quoted) and read back with ``csv.DictReader(f, delimiter="\\t")``, as ``scripts/cls_trainer_peer.py`` does.
Prints the label counts of each file, and the number of documents with their length in words (syntactic words,
the CoNLL-U lines with an integer ID) and in sentences: min, median, max.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jsonargparse import auto_cli

GENRE_COMMENT = "# genre = "


@dataclass
class Sentence:
    sent_id: str
    line: int
    text: str | None = None
    words: int = 0
    newdoc: str | None = None  # the ``# newdoc`` id where this sentence starts a document ("" for ``# newdoc``)


@dataclass
class Document:
    doc_id: str | None
    sentences: list[Sentence] = field(default_factory=list)


def genre_of(sent_id: str) -> str:
    """The genre a ``# sent_id`` (or ``# newdoc id``) names: the text before its first ``-``."""
    return sent_id.split("-", 1)[0]


def _ending(line: str) -> tuple[str, str]:
    """A line without and with its line end (``\\r\\n`` or ``\\n`` or none)."""
    body = line[:-1] if line.endswith("\n") else line
    body = body[:-1] if body.endswith("\r") else body
    return body, line[len(body) :]


def read(conllu_file: str) -> tuple[list[Sentence], str]:
    """The sentences of ``conllu_file`` and the file's text with ``# genre = ...`` after each ``# sent_id``."""
    text = Path(conllu_file).read_bytes().decode("utf-8")
    sentences: list[Sentence] = []
    out: list[str] = []
    current: Sentence | None = None
    newdoc: str | None = None
    in_block = False
    for number, raw in enumerate(_lines(text), start=1):
        out.append(raw)
        body, end = _ending(raw)
        if number == 1:
            body = body.removeprefix("\ufeff")
        if not body.strip():
            if in_block:
                _close(conllu_file, current, sentences)
            current, in_block = None, False
            continue
        in_block = True
        if body.startswith("#"):
            key, _, value = body[1:].partition("=")
            key, value = key.strip(), value.strip()
            if key in ("newdoc", "newdoc id"):
                newdoc = value
            elif key == "sent_id":
                if current is not None:
                    raise SystemExit(f"{conllu_file}:{number}: a second # sent_id in one sentence")
                current = Sentence(value, number, newdoc=newdoc)
                newdoc = None
                comment = f"{GENRE_COMMENT}{genre_of(value)}"
                out.append(comment + end if end else "\n" + comment)  # the same line end as # sent_id's
            elif key == "genre":
                raise SystemExit(f"{conllu_file}:{number}: already has a # genre comment")
            elif key == "text":
                if current is None:
                    raise SystemExit(f"{conllu_file}:{number}: # text before # sent_id")
                current.text = body.split("=", 1)[1].strip()
        elif current is None:
            raise SystemExit(f"{conllu_file}:{number}: a sentence without # sent_id")
        elif body.split("\t", 1)[0].isdigit():
            current.words += 1
    if in_block:
        _close(conllu_file, current, sentences)
    return sentences, "".join(out)


def _lines(text: str) -> list[str]:
    """``text`` split after each ``\\n`` only (``str.splitlines`` would also split at \\x1c, \\u2028, ...)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


def _close(conllu_file: str, sentence: Sentence | None, sentences: list[Sentence]) -> None:
    if sentence is None:
        raise SystemExit(f"{conllu_file}: sentence {len(sentences) + 1} has no # sent_id")
    if sentence.text is None:
        raise SystemExit(f"{conllu_file}:{sentence.line}: sentence {sentence.sent_id} has no # text")
    sentences.append(sentence)


def documents(conllu_file: str, sentences: list[Sentence]) -> list[Document]:
    """The sentences grouped by ``# newdoc``; stops where a document mixes genres or its id names another genre."""
    docs: list[Document] = []
    for s in sentences:
        if s.newdoc is not None or not docs:
            if s.newdoc is None:
                print(f"warning: {conllu_file}: sentences before the first # newdoc make one document")
            docs.append(Document(s.newdoc or None))
        docs[-1].sentences.append(s)
    bad = []
    for d in docs:
        genres = Counter(genre_of(s.sent_id) for s in d.sentences)
        if d.doc_id:
            genres.update({genre_of(d.doc_id): 0})
        if len(genres) > 1:
            bad.append(f"{d.doc_id} (line {d.sentences[0].line}): {dict(genres)}")
    if bad:
        raise SystemExit(f"{conllu_file}: {len(bad)} documents mix genres:\n" + "\n".join(bad[:20]))
    return docs


def _write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def ewt_genre(conllu_file: str, out: str, overwrite: bool = False) -> dict:
    """Write the sentence and document genre files of one EWT CoNLL-U file.

    Args:
        conllu_file: An EWT CoNLL-U file (en_ewt-ud-train.conllu, en_ewt-ud-dev.conllu, ...).
        out: Folder for the three files; not the input's folder nor inside it.
        overwrite: Replace output files that exist and are not empty.
    """
    source, folder = Path(conllu_file), Path(out)
    if not source.is_file():
        raise SystemExit(f"no such file: {conllu_file}")
    if folder.resolve().is_relative_to(source.resolve().parent):
        raise SystemExit(f"--out {out} is inside the input's folder {source.parent}: choose another folder")
    stem = source.stem
    paths = {
        "sentences": folder / f"{stem}-genre.tsv",
        "conllu": folder / f"{stem}-genre.conllu",
        "documents": folder / f"{stem}-genre-docs.tsv",
    }
    taken = [str(p) for p in paths.values() if p.exists() and p.stat().st_size > 0]
    if taken and not overwrite:
        raise SystemExit(f"these exist and are not empty (--overwrite true replaces them): {', '.join(taken)}")

    sentences, annotated = read(conllu_file)
    docs = documents(conllu_file, sentences)
    sentence_rows = [(s.text, genre_of(s.sent_id)) for s in sentences]
    doc_rows = [(" ".join(s.text for s in d.sentences), genre_of(d.sentences[0].sent_id)) for d in docs]

    folder.mkdir(parents=True, exist_ok=True)
    _write_tsv(paths["sentences"], sentence_rows)
    paths["conllu"].write_bytes(annotated.encode("utf-8"))
    _write_tsv(paths["documents"], doc_rows)

    counts = {
        str(paths["sentences"]): Counter(label for _, label in sentence_rows),
        str(paths["conllu"]): Counter(
            line.removeprefix(GENRE_COMMENT).rstrip("\r\n")
            for line in _lines(annotated)
            if line.startswith(GENRE_COMMENT)
        ),
        str(paths["documents"]): Counter(label for _, label in doc_rows),
    }
    summary = {
        "label_counts": {p: dict(sorted(c.items())) for p, c in counts.items()},
        "sentences": len(sentences),
        "documents": len(docs),
        "document_words": _stats([sum(s.words for s in d.sentences) for d in docs]),
        "document_sentences": _stats([len(d.sentences) for d in docs]),
    }
    for path, c in summary["label_counts"].items():
        print(f"{path}: {sum(c.values())} rows {c}")
    print(
        f"{len(docs)} documents; words per document {summary['document_words']}; "
        f"sentences per document {summary['document_sentences']}"
    )
    return summary


if __name__ == "__main__":
    auto_cli(ewt_genre, as_positional=False)
