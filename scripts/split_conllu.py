"""Split a CoNLL-U or IOB2 file in two, each sentence byte for byte as in the input (sentences are the blocks between
blank lines in both formats): to make a training and a validation file out of one file, or for the experiments in docs/.

    python scripts/split_conllu.py first --conllu_file data/uner/en_ewt/en_ewt-ud-dev.iob2 --n 1600 \
        --out runs/uner
    python scripts/split_conllu.py first --conllu_file data/ud/es_gsd/es_gsd-ud-dev.conllu --n 1000 --out runs/es
    python scripts/split_conllu.py genre --conllu_file data/ud/en_ewt/en_ewt-ud-train.conllu --held_out reviews \
        --out runs/genres

``first``: writes ``<stem>-first<n><suffix>`` and ``<stem>-rest<suffix>``, the suffix of the input (``.conllu``,
``.iob2``). ``genre``: EWT's ``# sent_id`` names each sentence's source (answers, email, newsgroup, reviews, weblog);
writes ``<stem>-<held_out><suffix>`` (the held-out genre) and ``<stem>-other<suffix>`` (every other genre). Both print
the sentence counts.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import auto_cli


def genre(block: str) -> str | None:
    """The genre a sentence block's ``# sent_id`` names (the text before its first ``-``)."""
    for line in block.splitlines():
        if line.startswith("# sent_id = "):
            return line.removeprefix("# sent_id = ").split("-", 1)[0]
    return None


def _blocks(conllu_file: str) -> list[str]:
    return [b for b in Path(conllu_file).read_text(encoding="utf-8").split("\n\n") if b.strip()]


def write_first(conllu_file: str, n: int, path: Path) -> Path:
    """The first ``n`` sentences of ``conllu_file``, byte for byte, written to ``path`` (the benchmarks' subsets)."""
    path.write_text("".join(b + "\n\n" for b in _blocks(conllu_file)[:n]), encoding="utf-8")
    return path


def _write(folder: Path, suffix: str, parts: dict[str, list[str]]) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, blocks in parts.items():
        path = folder / f"{name}{suffix}"
        path.write_text("".join(b + "\n\n" for b in blocks), encoding="utf-8")
        counts[str(path)] = len(blocks)
    print(counts)
    return counts


def split_genre(conllu_file: str, held_out: str, out: str) -> dict[str, int]:
    """One genre of EWT apart from the others.

    Args:
        conllu_file: An EWT CoNLL-U file.
        held_out: The genre to hold out: answers, email, newsgroup, reviews or weblog.
        out: Folder for the two files.
    """
    blocks = _blocks(conllu_file)
    genres = {genre(b) for b in blocks}
    if held_out not in genres:
        raise SystemExit(
            f"{conllu_file}: no sentence of genre {held_out!r}; it has {', '.join(sorted(map(str, genres)))}"
        )
    path = Path(conllu_file)
    stem = path.stem
    return _write(
        Path(out),
        path.suffix,
        {
            f"{stem}-{held_out}": [b for b in blocks if genre(b) == held_out],
            f"{stem}-other": [b for b in blocks if genre(b) != held_out],
        },
    )


def split_first(conllu_file: str, n: int, out: str) -> dict[str, int]:
    """The first ``n`` sentences apart from the rest.

    Args:
        conllu_file: A CoNLL-U or IOB2 file.
        n: How many sentences go to the first part.
        out: Folder for the two files.
    """
    blocks, path = _blocks(conllu_file), Path(conllu_file)
    if not 0 < n < len(blocks):
        raise SystemExit(f"{conllu_file} has {len(blocks)} sentences: --n must be from 1 to {len(blocks) - 1}, not {n}")
    return _write(Path(out), path.suffix, {f"{path.stem}-first{n}": blocks[:n], f"{path.stem}-rest": blocks[n:]})


if __name__ == "__main__":
    auto_cli({"genre": split_genre, "first": split_first}, as_positional=False)
