"""What training sees of its files: a seeded sample of sentences, per-file sampling weights, augmented copies.

All three are pure functions of their arguments and a seed, so two runs, or two processes of one run, draw the
same sentences.
"""

from __future__ import annotations

import math
import os
import random
import resource
from collections.abc import Sequence
from pathlib import Path

from nasty_lightning.errors import UserError

AUGMENT_RATE = 0.2  # the chance that an augmented copy replaces a word
# Memory an augmented copy of a word takes while its copies are encoded, at the peak (measured on EWT with
# MiniLM's and a WordPiece tokenizer: 220 to 260 bytes, most of it Python lists of subword ids); kept: 140.
AUGMENT_BYTES_PER_WORD = 260


def sample(n: int, k: int, seed: int) -> list[int]:
    """``k`` of the indices ``0..n-1``, in ascending order, drawn with ``seed``. For the same seed a smaller
    sample is part of a larger one (the first ``k`` of one seeded shuffle), so learning curves are nested."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[:k])


def temperature_draws(sizes: Sequence[int], temperature: float) -> list[int]:
    """Sentences drawn from each file per epoch: the epoch keeps its size (the sum of ``sizes``), shared in
    proportion to ``size ** (1 / temperature)``. Temperature 1 keeps every file's size; higher ones move
    toward equal shares, so a small file is seen more often and a large one less (multilingual training's
    temperature sampling)."""
    # n ** (1 / T), relative to the largest file's, in logarithms: a small T overflows floats otherwise
    # (1e-9 gives the largest file the whole epoch, and every other file one sentence)
    logs = [math.log(n) / temperature if n else -math.inf for n in sizes]
    weights = [math.exp(x - max(logs)) for x in logs]
    total = sum(sizes)
    return [max(1, round(total * w / sum(weights))) for w in weights]


def file_draws(files: Sequence[str], groups: Sequence[int], temperature: float) -> tuple[list[int], str]:
    """Sentences drawn from each training file per epoch (``temperature_draws``), its sentences being those whose
    ``groups`` entry is the file's index, and a line that says the shares; refuses a file the sample left empty."""
    sizes = [groups.count(g) for g in range(len(files))]
    if 0 in sizes:
        raise UserError(
            f"--data.max_train_sentences sampled no sentence of {files[sizes.index(0)]}, which "
            "--data.sampling_temperature would draw from; sample more, or leave the file out"
        )
    draws = temperature_draws(sizes, temperature)
    shares = (f"{Path(f).name} {d:,} of {n:,}" for f, d, n in zip(files, draws, sizes, strict=True))
    return draws, "sentences per epoch by training file: " + ", ".join(shares)


def draw(members: Sequence[int], count: int, epoch: int, seed: int) -> list[int]:
    """``count`` of ``members`` for ``epoch``: the epoch's slice of an endless stream of seeded shuffles of
    ``members``, so an undersampled file shows every member over the epochs before repeating one, and an
    oversampled file repeats each member as evenly as possible."""
    start, out = epoch * count, []
    cycle, offset = divmod(start, len(members))
    while len(out) < count:
        order = list(members)
        random.Random(seed * 100_003 + cycle).shuffle(order)
        out.extend(order[offset : offset + count - len(out)])
        cycle, offset = cycle + 1, 0
    return out


def augment(
    words: Sequence[Sequence[str]], labels: Sequence[Sequence[tuple[int, ...]]], copies: int, seed: int
) -> tuple[list[list[str]], list[list[tuple[int, ...]]]]:
    """``copies`` new versions of every sentence, each word replaced (with chance ``AUGMENT_RATE``) by another
    word seen with exactly the same labels (every head's) somewhere in ``words``. Labels never change; only
    forms do. Refused (``check_augment_fits``) where the copies cannot fit in memory."""
    check_augment_fits(copies, sum(map(len, words)))
    seen: dict[tuple[int, ...], dict[str, None]] = {}
    for sentence, ids in zip(words, labels, strict=True):
        for word, label in zip(sentence, ids, strict=True):
            seen.setdefault(label, {})[word] = None
    pools = {label: list(forms) for label, forms in seen.items()}
    rng = random.Random(seed)
    new_words, new_labels = [], []
    for _ in range(copies):
        for sentence, ids in zip(words, labels, strict=True):
            new_words.append(
                [
                    rng.choice(pools[label]) if rng.random() < AUGMENT_RATE else word
                    for word, label in zip(sentence, ids, strict=True)
                ]
            )
            new_labels.append(list(ids))
    return new_words, new_labels


def check_augment_fits(copies: int, words: int) -> None:
    """Refuse ``copies`` augmented copies of ``words`` training words that the memory cannot hold."""
    need, free = copies * words * AUGMENT_BYTES_PER_WORD, available_memory()
    if free is not None and need > free:
        raise UserError(
            f"--data.augment {copies} makes {copies * words:,} words of copies of the {words:,} training words, "
            f"about {need / 2**30:,.1f} GiB of memory, and {free / 2**30:,.1f} GiB are available: "
            f"give --data.augment {max(free // (words * AUGMENT_BYTES_PER_WORD), 0)} or less"
        )


def available_memory() -> int | None:
    """Bytes the process may still allocate: the system's available memory (Linux's ``MemAvailable``, else the
    free pages), or the address-space limit (``ulimit -v``) if lower; None where neither is known."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            free = next((int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")), None)
    except (OSError, ValueError):
        pass
    if free is None and hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        free = limit if free is None else min(free, limit)
    return free
