"""Lemmas as edit scripts: a lemma is predicted as one of the rewrites from word form to lemma seen in training.

A script is a casing and a rewrite, as UDPipe 2 does it. The casing says whether the rewrite applies to the
form as written (``keep``: proper nouns, ``I``) or to its lower-case version (``lower``: everything else).
The rewrite keeps the longest substring that the form and the lemma share and replaces what is before and
after it: ``studies -> study`` cuts 3 characters at the end and adds ``y``, a rule that serves every
``-ies`` plural. Where form and lemma share nothing (``went -> go``, ``was -> be``) the script is the
lemma itself. Every pair of form and lemma has a script that turns the one into the other exactly; a
lemma whose script training never saw cannot be predicted (``coverage`` counts them).

Scripts are class labels, written as compact JSON (``["lower",0,"",3,"y"]``, ``["=","be"]``) so any form
and lemma round-trip whatever characters they hold.

A script is chosen from the subwords around a word, never its letters, so it can cut the wrong number of them
(``companies -> companie``). ``LemmaLexicon`` corrects that for words training saw: the lemmas each form had
there, with its UPOS where the model predicts UPOS, as Stanza's dictionary lemmatizer keeps them. A predicted
lemma the word never had in training is replaced by the lemma it had most often.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from nasty_lightning.errors import UserError

if TYPE_CHECKING:
    from nasty_lightning.formats.conllu import Sentence

LEMMA = "lemma"  # the column of lemmas
LOWER, KEEP, WHOLE = "lower", "keep", "="


def _rule(source: str, lemma: str) -> tuple[int, list]:
    """The length of the longest substring ``source`` and ``lemma`` share, and the rewrite around it."""
    match = SequenceMatcher(None, source, lemma, autojunk=False).find_longest_match(0, len(source), 0, len(lemma))
    i, j, n = match.a, match.b, match.size
    return n, [i, lemma[:j], len(source) - i - n, lemma[j + n :]]


@lru_cache(maxsize=1 << 16)  # words repeat: a treebank's vocabulary and scoring ask for the same pairs again
def edit_script(form: str, lemma: str) -> str:
    """The script that turns ``form`` into ``lemma``; ``apply_script(edit_script(f, l), f) == l`` always."""
    lower_shared, lower_rule = _rule(form.lower(), lemma)
    keep_shared, keep_rule = _rule(form, lemma)
    if lower_shared == keep_shared == 0:
        return json.dumps([WHOLE, lemma], ensure_ascii=False, separators=(",", ":"))
    # the rewrite that keeps more of the form; on a tie (a lower-case form) the one that ignores casing
    casing, rule = (LOWER, lower_rule) if lower_shared >= keep_shared else (KEEP, keep_rule)
    return json.dumps([casing, *rule], ensure_ascii=False, separators=(",", ":"))


def check_script(script: str, source: str) -> None:
    """Raise ``UserError`` unless ``script`` is an edit script (a model directory is untrusted input)."""
    try:
        parts = json.loads(script)
    except json.JSONDecodeError:
        parts = None
    whole = isinstance(parts, list) and len(parts) == 2 and parts[0] == WHOLE and isinstance(parts[1], str)
    whole = whole and parts[1] != ""  # an empty lemma cannot be written in a CoNLL-U column
    rule = isinstance(parts, list) and len(parts) == 5 and parts[0] in (LOWER, KEEP)
    if rule:
        _, cut_front, add_front, cut_back, add_back = parts
        cuts_ok = all(type(n) is int and n >= 0 for n in (cut_front, cut_back))
        rule = cuts_ok and isinstance(add_front, str) and isinstance(add_back, str)
    if not (whole or rule):
        raise UserError(f"{source}: {script!r} is not a lemma edit script")


def apply_script(script: str, form: str) -> str:
    """The lemma ``script`` makes of ``form``; the (cased) form itself where the script cuts all it has or more
    (a script keeps at least one character of the form it was made from, so it was made from another form)."""
    parts = json.loads(script)
    if parts[0] == WHOLE:
        return parts[1]
    casing, cut_front, add_front, cut_back, add_back = parts
    source = form.lower() if casing == LOWER else form
    if cut_front + cut_back >= len(source):
        return source
    return add_front + source[cut_front : len(source) - cut_back] + add_back


def coverage(pairs: Iterable[tuple[str, str]], scripts: Iterable[str]) -> tuple[int, int]:
    """How many (form, lemma) pairs have their script among ``scripts`` (the lemmas a model that knows those
    scripts can get right), of how many."""
    known = set(scripts)
    reached = total = 0
    for form, lemma in pairs:
        total += 1
        reached += edit_script(form, lemma) in known
    return reached, total


@dataclass(frozen=True)
class LemmaLexicon:
    """The lemmas training gave each word form (with its tag, where ``tag_column`` is given), most frequent first.

    Its serialisation is ``to_dict`` (``{"tag_column": "upos", "lemmas": {"saw\\tVERB": ["see"], ...}}``), which a
    checkpoint and a model directory hold; ``from_dict`` checks it, as untrusted input.
    """

    tag_column: str | None
    lemmas: Mapping[str, Sequence[str]]

    @staticmethod
    def key(form: str, tag: str | None) -> str:
        return form if tag is None else f"{form}\t{tag}"

    @classmethod
    def learn(cls, sentences: Iterable[Sentence], tag_column: str | None) -> LemmaLexicon:
        """The lexicon of the words of ``sentences`` that have a lemma (and a tag, with ``tag_column``)."""
        counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for s in sentences:
            tags = s.labels(tag_column) if tag_column else [None] * len(s.words)
            for form, lemma, tag in zip(s.words, s.labels(LEMMA), tags, strict=True):
                if lemma is not None and (tag is not None or tag_column is None):
                    counts[cls.key(form, tag)][lemma] += 1
        return cls(tag_column, {k: [lemma for lemma, _ in c.most_common()] for k, c in counts.items()})

    def correct(self, words: Sequence[str], lemmas: Sequence[str], tags: Sequence[str] | None) -> list[str]:
        """The predicted ``lemmas`` of ``words`` (tagged ``tags`` where the lexicon is by tag), each one a word
        never had in training replaced by its most frequent lemma there."""
        tags = [None] * len(words) if self.tag_column is None else tags
        out = []
        for form, lemma, tag in zip(words, lemmas, tags, strict=True):
            known = self.lemmas.get(self.key(form, tag))
            out.append(known[0] if known and lemma not in known else lemma)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"tag_column": self.tag_column, "lemmas": {k: list(v) for k, v in self.lemmas.items()}}

    @classmethod
    def from_dict(cls, data: Any, source: str, columns: Sequence[str]) -> LemmaLexicon:
        """The lexicon of ``to_dict``'s form for a model predicting ``columns``, or ``UserError`` naming ``source``."""
        ok = isinstance(data, dict) and (data.get("tag_column") is None or data.get("tag_column") in columns)
        lemmas = data.get("lemmas") if ok else None
        ok = isinstance(lemmas, dict) and all(
            isinstance(v, list) and v and all(isinstance(x, str) and x for x in v) for v in lemmas.values()
        )
        if not ok:
            raise UserError(
                f"{source}: a lemma lexicon must be {{tag_column, lemmas: {{word: [lemma, ...]}}}}, its tag column "
                f"one the model predicts ({', '.join(columns)})"
            )
        if LEMMA not in columns:
            raise UserError(f"{source}: a lemma lexicon for a model that predicts no lemmas")
        return cls(data["tag_column"], lemmas)
