"""The data module: CoNLL-U files in, batches of subword windows out."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from nasty_lightning.data.batching import SentenceBatchSampler, collate
from nasty_lightning.data.cache import cache_key, load_windows, save_windows
from nasty_lightning.data.encoding import Window, encode, encode_file, file_notes, load_tokenizer
from nasty_lightning.data.packing import collate_packed
from nasty_lightning.data.sampling import augment, check_augment_fits, file_draws, sample
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import Sentence
from nasty_lightning.formats.fetch import fetch_treebank_file
from nasty_lightning.formats.texts import is_text_file, read_labelled
from nasty_lightning.labels.heads import LEMMA, Head, LabelSchema, LabelVocab, is_sentence_column, label_columns
from nasty_lightning.labels.lemmas import LemmaLexicon


class TaggingDataModule(L.LightningDataModule):
    """Reads CoNLL-U (or IOB2) files, builds the label vocabulary and serves subword batches."""

    def __init__(
        self,
        train_file: str | list[str] | None = None,
        val_file: str | list[str] | None = None,
        test_file: str | None = None,
        label_column: str | list[str] = "upos",
        text_column: str = "text",
        multi_label: bool = False,
        batch_size: int = 16,
        eval_batch_size: int = 64,
        max_tokens: int | None = None,
        max_length: int = 512,
        pack: bool = True,
        bucket: bool = False,
        num_workers: int = 0,
        treebank: str | None = None,
        cache_dir: str | None = "~/.cache/nasty_lightning",
        labels: list[str] | dict[str, list[str]] | None = None,
        model_name: str = "minilm",
        trust_remote_code: bool = False,
        seed: int = 42,
        sampling_temperature: float = 1.0,
        max_train_sentences: int | None = None,
        augment: int = 0,
        lemma_lexicon: bool = True,
    ) -> None:
        """
        Args:
            train_file: Training file, CoNLL-U (or IOB2 with the suffix ``.iob2``), or labelled texts (``.tsv``,
                ``.csv`` with a header row, ``.jsonl``: one text per row); the guide's ``--train``. A list of files
                (``[en.conllu, es.conllu]``) trains on all of them, with one label vocabulary.
            val_file: Validation file, scored after every epoch; the guide's ``--validation``. With a list, the
                scores are those of all files together, and each file's too: ``val_acc/<file stem>``.
            test_file: Test file, used by ``nasty-train test``.
            label_column: Column to predict: upos, xpos, deprel, feats, lemma, ... (``ner`` for IOB2 files), or a
                list of them, ``[upos, xpos, feats, lemma]``: one model, one encoder pass, one head per column
                (lemmas as edit scripts from the form). Validation's ``validation_accuracy`` (``val_acc``) is
                the first column's; the others are logged as ``val_<column>``, with ``val_alltags`` (UPOS, XPOS
                and FEATS all right) when two of those are predicted. Any other name is a sentence's label: a
                CoNLL-U comment (``genre`` reads ``# genre = news``) or a column of a file of labelled texts
                (``label``); ``[upos, genre]`` learns both from one file.
            text_column: The column (TSV, CSV) or key (JSON Lines) of a file of labelled texts that holds the text;
                the text is split into words as ``tag`` splits plain text.
            multi_label: Each text has a set of labels (``a|b``, or a JSON list), each a yes or no with a threshold
                chosen for its best F1 on validation; scored by exact match (``val_acc``), micro- and macro-F1.
            batch_size: Sentences (windows of long sentences) per training batch; per device under DDP.
            eval_batch_size: Sentences per validation and test batch (sorted by length, so with little padding);
                larger batches cost less per sentence (EWT dev validated in 3.6 s instead of 4.5 s at 16).
            max_tokens: Instead of ``batch_size`` sentences, as many as fit in this many subword positions,
                padding included (batches of long sentences hold fewer); implies sorting by length.
            max_length: Most subwords in one sequence, special tokens included; longer sentences are
                split into several windows at word boundaries, never truncated.
            pack: Pack each training batch's sentences into rows as long as its longest one, each sentence
                with its own positions and attending only to itself: the same batches, with little padding.
                Models that cannot take packed rows train on padded rows (with a warning).
            bucket: Put training sentences of similar length in the same batch. Wastes no compute on padding
                either, but learned 2.4 points slower per epoch than random batches (docs/benchmarks.md).
                Evaluation batches are always sorted by length.
            num_workers: DataLoader worker processes.
            treebank: Repository of the treebank from which its missing data files (``en_ewt-ud-train.conllu``,
                ``.iob2``) are downloaded: a UD treebank (``UD_English-EWT``) or ``owner/name``
                (``UniversalNER/UNER_English-EWT``); without it, missing files are an error.
            cache_dir: Where encoded files are kept, keyed by file content, tokenizer and max_length, so that
                later runs skip tokenization; ``null`` turns the cache off.
            labels: Label vocabulary (by column, for several); taken from the training file when it is not
                given (and from the checkpoint with ``--ckpt_path``).
            model_name: Model whose tokenizer encodes the words (linked from ``--model.model_name``).
            trust_remote_code: Run tokenizer code shipped with a hub model (linked from ``--model.trust_remote_code``).
            seed: Seed of the batch order, of the sample and of augmentation (linked from ``--seed_everything``).
            sampling_temperature: With several training files, how many sentences each gives an epoch: in
                proportion to its size ``** (1 / T)``, the epoch's size unchanged. 1 keeps every file's size;
                higher values give a small file (a language with little data) more of each epoch, a large one
                less (multilingual models train at 3 to 5); a file's sentences are all seen before any repeats.
            max_train_sentences: Train on this many sentences drawn from the training data, the same ones in
                every run with the same seed (a smaller sample is part of a larger one): few-shot learning
                curves. The label vocabulary is the sample's.
            augment: Add this many altered copies of every training sentence, in which each word is replaced
                (one chance in five) by another word that the training data gives exactly the same labels;
                labels never change. Not with a lemma column, whose labels depend on the word.
            lemma_lexicon: With a lemma column, the model keeps the lemmas the training data gives each word (with
                its UPOS, where UPOS is predicted too), and a predicted lemma that a word seen in training never
                had there becomes its most frequent one (EWT dev lemmas: 96.73 to 97.47, docs/experiments.md).
                Validation's ``val_lemma`` scores the edit scripts alone.
        """
        super().__init__()
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size <= 0:
                raise UserError(f"--data.{name} must be positive, got {size}")
        if max_tokens is not None and max_tokens < max_length:
            raise UserError(f"--data.max_tokens {max_tokens} must be at least --data.max_length ({max_length})")
        if not sampling_temperature > 0:
            raise UserError(f"--data.sampling_temperature must be positive, got {sampling_temperature}")
        if max_tokens is not None and sampling_temperature != 1:
            raise UserError("--data.sampling_temperature needs batches of --data.batch_size, not --data.max_tokens")
        if max_train_sentences is not None and max_train_sentences <= 0:
            raise UserError(f"--data.max_train_sentences must be positive, got {max_train_sentences}")
        if augment < 0:
            raise UserError(f"--data.augment must be at least 0, got {augment}")
        columns = label_columns(label_column)
        if multi_label and not any(is_sentence_column(c) for c in columns):
            raise UserError(f"--data.multi_label: no column of {', '.join(columns)} labels texts")
        if augment and LEMMA in columns:
            raise UserError(
                "--data.augment replaces words, which would change their lemmas' edit scripts: not with lemma"
            )
        self.save_hyperparameters(ignore=["labels"])  # the model's hparams hold them, as ``labels``
        self.train_files, self.val_files = as_list(train_file), as_list(val_file)
        seen = [Path(f).resolve() for f in self.val_files]
        twice = next((f for f, r in zip(self.val_files, seen, strict=True) if seen.count(r) > 1), None)
        if twice is not None:
            raise UserError(f"--data.val_file names {twice} more than once")
        self._sentences: dict[str, list[Sentence]] = {}
        self._train_sample: list[int] | None = None
        if labels is not None:
            self.schema = LabelSchema.of(labels, columns, multi_label)
        elif self.train_files:
            for path in self.train_files:
                self.ensure_file(path)
                for column in columns:
                    Head(column, LabelVocab(())).check_values(path, self.sentences(path))
            sentences = self._training_sentences()
            if augment:
                check_augment_fits(augment, sum(len(s.words) for s in sentences))
            self.schema = LabelSchema.learn(columns, sentences, multi_label)
        else:
            raise UserError("no label vocabulary: give --data.train_file, or a checkpoint with --ckpt_path")
        self.datasets: dict[str, list[Window]] = {}
        self.file_stats: dict[str, dict[str, int]] = {}
        self.val_parts: list[tuple[str, int]] = []  # with several validation files: (name, first sentence)
        self._train_groups: list[int] = []  # the training file of each training window
        self.tokenizer = None
        self._train_sampler: SentenceBatchSampler | None = None
        self._resume_at: dict[str, int] | None = None

    @property
    def heads(self) -> tuple[Head, ...]:
        return self.schema.heads

    @property
    def label_vocab(self) -> list[str] | dict[str, list[str]]:
        """The labels as checkpoints hold them (``LabelSchema.checkpoint_labels``)."""
        return self.schema.checkpoint_labels()

    @property
    def labels_by_column(self) -> dict[str, list[str]]:
        """The labels of every head by column, one column's too: what the model takes, so that its heads know
        their columns (a warm start matches them by name)."""
        return self.schema.to_dict()

    def ensure_file(self, path: str) -> None:
        if Path(path).is_file():
            return
        if self.hparams.treebank is None:
            raise UserError(
                f"{path} does not exist; put the file there, set --data.treebank to download it, "
                "or point --data.train_file / --data.val_file / --data.test_file at your copy"
            )
        fetch_treebank_file(self.hparams.treebank, path)

    def _sampled(self, n: int) -> range | list[int]:
        """The training sentences used, as indices into all training files' sentences in order."""
        k = self.hparams.max_train_sentences
        if k is None:
            return range(n)
        if k > n:
            raise UserError(f"--data.max_train_sentences {k} is more than the {n} training sentences")
        if self._train_sample is None:
            self._train_sample = sample(n, k, self.hparams.seed)
        return self._train_sample

    def _training_sentences(self) -> list[Sentence]:
        """The sentences trained on: all training files' (or their sample, ``--data.max_train_sentences``)."""
        sentences = [s for path in self.train_files for s in self.sentences(path)]
        return [sentences[i] for i in self._sampled(len(sentences))]

    @cached_property
    def lemma_lexicon(self) -> LemmaLexicon | None:
        """The lemmas the training sentences give each word, with a lemma column and ``--data.lemma_lexicon``."""
        columns = self.schema.columns
        if not (self.hparams.lemma_lexicon and LEMMA in columns and self.train_files):
            return None
        return LemmaLexicon.learn(self._training_sentences(), self.schema.lexicon_tag_column)

    def sentences(self, path: str) -> list[Sentence]:
        if path not in self._sentences:
            self._sentences[path] = self._read(path)
        return self._sentences[path]

    def _read(self, path: str) -> list[Sentence]:
        """A file's sentences: CoNLL-U or IOB2, or labelled texts (a TSV, CSV or JSON Lines file), whose labels
        can only be a sentence's."""
        columns = label_columns(self.hparams.label_column)
        words = [c for c in columns if not is_sentence_column(c)]
        if words and is_text_file(path):
            raise UserError(
                f"{path} holds labelled texts, not words: --data.label_column {', '.join(words)} needs a CoNLL-U "
                "(or IOB2) file"
            )
        return read_labelled(path, tuple(columns), self.hparams.text_column)

    def check_files(self) -> None:
        """Check, before training starts, what fit would otherwise find wrong later: every data file there
        (or downloaded), well-formed and labelled, and ``max_length`` within the tokenizer's positions."""
        for path in [*self.train_files, *self.val_files, *as_list(self.hparams.test_file)]:
            self.ensure_file(path)
            for head in self.heads:
                head.check_values(path, self.sentences(path))
        self._load_tokenizer()

    def prepare_data(self) -> None:
        """Download missing files and fill the encoding cache (on one process per machine)."""
        h = self.hparams
        for path in [*self.train_files, *self.val_files, *as_list(h.test_file)]:
            self.ensure_file(path)
            if h.cache_dir is not None:
                self._load_tokenizer()
                cache = self._cache_file(path)
                if not cache.is_file():
                    save_windows(cache, *self._encode(path))

    def _load_tokenizer(self) -> None:
        if self.tokenizer is not None:
            return
        h = self.hparams
        self.tokenizer = load_tokenizer(h.model_name, h.trust_remote_code)
        limit = self.tokenizer.model_max_length
        if limit < 1_000_000 and h.max_length > limit:  # tokenizers without a limit say 1e30
            raise UserError(f"--data.max_length {h.max_length} exceeds the {limit} positions of {h.model_name!r}")

    def setup(self, stage: str) -> None:
        h = self.hparams
        self._load_tokenizer()
        splits = {
            "fit": {"train": self.train_files, "val": self.val_files},
            "validate": {"val": self.val_files},
            "test": {"test": as_list(h.test_file)},
        }[stage]
        for split, paths in splits.items():
            if not paths:
                if split == "val" and stage == "fit":
                    continue
                raise UserError(f"--data.{split}_file is needed for {stage}")
            if split not in self.datasets:
                self.datasets[split] = self._split_dataset(split, paths)

    def _split_dataset(self, split: str, paths: list[str]) -> list[Window]:
        """The windows of one or more files, numbered as one run of sentences; for training, only the sampled
        sentences, and their augmented copies."""
        windows, groups, starts, total = [], [], [], 0
        for group, path in enumerate(paths):
            file_windows = self._dataset(path)
            windows += [replace(w, sentence=w.sentence + total) for w in file_windows] if total else file_windows
            groups += [group] * len(file_windows)
            starts.append(total)
            total += self.file_stats[path]["sentences"]
        if split == "val":
            names = [Path(p).stem for p in paths]
            names = names if len(set(names)) == len(names) else paths
            self.val_parts = list(zip(names, starts, strict=True)) if len(paths) > 1 else []
        if split != "train":
            return windows
        keep = set(self._sampled(total))
        if len(keep) < total:
            chosen = [i for i, w in enumerate(windows) if w.sentence in keep]
            windows, groups = [windows[i] for i in chosen], [groups[i] for i in chosen]
        if self.hparams.augment:
            copies, copy_groups = self._augmented(paths, starts, keep, total)
            windows, groups = windows + copies, groups + copy_groups
        self._train_groups = groups
        return windows

    def _augmented(
        self, paths: list[str], starts: list[int], keep: set[int], total: int
    ) -> tuple[list[Window], list[int]]:
        """Encoded augmented copies of the training sentences in ``keep``, numbered after the last one (never
        cached: they are cheap for the small data augmentation is for), and their files."""
        words, labels, groups = [], [], []
        for group, (path, start) in enumerate(zip(paths, starts, strict=True)):
            kept = [s for i, s in enumerate(self.sentences(path)) if start + i in keep]  # label only the sample
            words += [s.words for s in kept]
            labels += self.schema.label_ids(path, kept)[0]
            groups += [group] * len(kept)
        new_words, new_labels = augment(words, labels, self.hparams.augment, self.hparams.seed)
        windows = encode(
            new_words, self.tokenizer, self.hparams.max_length, new_labels, sentence_heads=self.schema.sentence_heads
        )
        return [replace(w, sentence=w.sentence + total) for w in windows], [
            groups[w.sentence % len(words)] for w in windows
        ]

    def _dataset(self, path: str) -> list[Window]:
        """The encoded windows of a file: from the cache when it has them, else encoded (and cached)."""
        cache = self._cache_file(path)
        if cache is not None and cache.is_file():
            windows, info = load_windows(cache)
        else:
            windows, info = self._encode(path)
            if cache is not None:
                save_windows(cache, windows, info)
        self.file_stats[path] = {"sentences": info["sentences"], "words": info["words"]}
        warnings, notes = file_notes(path, info, windows, self.hparams.max_length)
        for message in warnings:
            rank_zero_warn(message)
        for message in notes:
            rank_zero_info(message)
        return windows

    def _encode(self, path: str) -> tuple[list[Window], dict]:
        return encode_file(path, self.sentences(path), self.schema, self.tokenizer, self.hparams.max_length)

    def _cache_file(self, path: str) -> Path | None:
        h = self.hparams
        if h.cache_dir is None:
            return None
        key = cache_key(path, self.tokenizer, h.max_length, self.label_vocab, [h.label_column, h.multi_label])
        return Path(h.cache_dir).expanduser() / f"{Path(path).stem}-{key}.pt"

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        windows = self.datasets[split]
        trainer = self.trainer
        groups = draws = None
        if shuffle and self.hparams.sampling_temperature != 1 and len(self.train_files) > 1:
            groups = self._train_groups
            draws, shares = file_draws(self.train_files, groups, self.hparams.sampling_temperature)
            rank_zero_info(shares)
        sampler = SentenceBatchSampler(
            [len(w.input_ids) for w in windows],
            self.hparams.batch_size if shuffle else self.hparams.eval_batch_size,
            shuffle=shuffle,
            seed=self.hparams.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            bucket=self.hparams.bucket,
            max_tokens=self.hparams.max_tokens,
            groups=groups,
            draws=draws,
        )
        loss_norm = None
        if shuffle:  # training
            loss_norm = sampler.mean_labelled_words(windows)
            self._train_sampler = sampler
            if self._resume_at is not None:
                sampler.resume(**self._resume_at)
                self._resume_at = None
        packed = shuffle and self.hparams.pack and self._model_accepts_packed_rows()
        return DataLoader(
            windows,
            batch_sampler=sampler,
            collate_fn=partial(
                collate_packed if packed else collate, pad_id=self.tokenizer.pad_token_id, loss_norm=loss_norm
            ),
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            # Its own generator: a new iterator would otherwise draw from the global one that dropout
            # uses, and a resumed run (which starts fewer iterators) would drop out other units.
            generator=torch.Generator(),
        )

    def _model_accepts_packed_rows(self) -> bool:
        model = self.trainer.lightning_module if self.trainer else None
        if model is None or getattr(model, "accepts_packed_rows", True):
            return True
        if self.schema[0].is_sentence:  # a sequence classifier that labels a row's first window only
            return False
        rank_zero_warn(
            f"--data.pack: the model {self.hparams.model_name!r} does not give packed rows the outputs of separate "
            "rows (it takes no position ids or no block attention mask); training on padded rows"
        )
        return False

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to encode new data (labels, column, window size), the data's size, and
        the place in the training epoch."""
        h = self.hparams
        return {
            "labels": self.label_vocab,
            "label_column": h.label_column,
            "multi_label": h.multi_label,
            "max_length": h.max_length,
            "files": self.file_stats,
            "train_position": self._train_position(),
            "lemma_lexicon": None if self.lemma_lexicon is None else self.lemma_lexicon.to_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training epoch where the checkpoint left it: the batches already trained on are skipped.

        Lightning's own hook for this, a loader's ``load_state_dict``, comes too late here: the learning-rate
        schedule asks for the number of steps, which builds the training loader before loops are restored.
        The data module's state is restored first, before any loader exists.
        """
        self._resume_at = state_dict.get("train_position")

    def _train_position(self) -> dict[str, int] | None:
        trainer, sampler = self.trainer, self._train_sampler
        if trainer is None or sampler is None or trainer.state.fn != TrainerFn.FITTING:
            return None
        return {"epoch": sampler.epoch, "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.processed}


def as_list(files: str | list[str] | None) -> list[str]:
    """A file option's files: none, one, or a list."""
    return [] if files is None else [files] if isinstance(files, str) else list(files)
