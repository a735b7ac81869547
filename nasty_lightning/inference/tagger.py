"""Tagging with an exported model directory: ``Tagger.load(DIR).tag(...)``.

A model directory may come from anywhere, so loading it never runs code from it: a configuration that
names model code (``auto_map``) or weights stored only as a pickle (``pytorch_model.bin``) are refused
(``nasty_lightning.formats.untrusted.check_model_dir``), and weights are read from safetensors only, or from the
ONNX graph of a quantized model (``nasty_lightning.inference.onnx_model``: tensors and standard operators only).
Its files must belong together (``model_dir.check_weights``, ``heads.Head.check``), and are read again
where an export replaced the folder while they were read (``model_dir.snapshot``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm.auto import tqdm

from nasty_lightning.data.batching import collate, padded_batches
from nasty_lightning.data.encoding import Window, encode
from nasty_lightning.data.packing import pack
from nasty_lightning.data.tokenizer_file import TokenizerFile, model_dir_tokenizer
from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import (
    CASING_FILE,
    CHARS_FILE,
    CONFIG_FILE,
    HEADS_FILE,
    LAYER_MIX_FILE,
    LEXICON_FILE,
    META_FILE,
    ONNX_FILE,
    check_files,
    check_weights,
    read_lexicon,
    read_meta,
    snapshot,
)
from nasty_lightning.formats.texts import split_words, word_spans  # also importable from here, where they were
from nasty_lightning.formats.untrusted import check_model_dir
from nasty_lightning.inference.onnx_model import OnnxNetwork
from nasty_lightning.inference.runtime import check_batch_size, inference_dtype
from nasty_lightning.labels.entities import spans
from nasty_lightning.labels.heads import LEMMA, Head, LabelSchema
from nasty_lightning.labels.lemmas import LemmaLexicon
from nasty_lightning.modelling import bert_family
from nasty_lightning.modelling.casing import casing_embedding
from nasty_lightning.modelling.chars import CharEncoder
from nasty_lightning.modelling.crf import transitions_from_meta
from nasty_lightning.modelling.decoding import IOB2Decoders
from nasty_lightning.modelling.layer_mix import LayerMix
from nasty_lightning.modelling.network import Network
from nasty_lightning.modelling.pooling import head_layer

if TYPE_CHECKING:  # importing transformers' modelling code takes a second: tagging imports it only when it must
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

LOAD_ATTEMPTS = 5  # reads of a model directory that an export or quantize keeps replacing meanwhile


def _load_weights(module: torch.nn.Module, path: Path, what: str) -> torch.nn.Module:
    """``module`` with the weights of ``path`` (safetensors: tensors only); ``what`` names the module in errors."""
    try:
        module.load_state_dict(load_file(path), strict=True)
    except (OSError, SafetensorError) as err:
        raise UserError(f"cannot read {what} from {path} ({err})") from None
    except RuntimeError as err:
        raise UserError(f"{path} does not fit {what} ({str(err).splitlines()[0]})") from None
    return module.eval()


@dataclass
class Tagger:
    """A fine-tuned tagger: the model, its tokenizer and its heads (one per predicted column), as ``export``
    writes them. The first head is the model's own classifier; the others (``layers``) read the same last
    hidden states, so every column comes from one encoder pass. A quantized model (``nasty-train quantize``)
    has no PyTorch ``model``: its encoder and heads are one ONNX graph (``onnx``)."""

    model: PreTrainedModel | bert_family.TokenClassifier | None
    tokenizer: PreTrainedTokenizerBase | TokenizerFile
    heads: LabelSchema  # a sequence of ``Head`` is taken as the schema of those heads
    max_length: int
    batch_size: int = 64
    layers: torch.nn.ModuleDict = field(default_factory=torch.nn.ModuleDict)
    constrained: bool = True  # heads of IOB2 tags: the best valid sequence, not each word's best tag
    casing: torch.nn.Embedding | None = None  # of a model trained with --model.casing true
    mix: LayerMix | None = None  # of a model trained with --model.layer_mix true
    chars: CharEncoder | None = None  # of a model trained with --model.chars true
    onnx: OnnxNetwork | None = None  # of a quantized model, in place of model, layers, casing and mix
    meta: dict[str, Any] = field(default_factory=dict)  # the model directory's META_FILE
    lexicon: LemmaLexicon | None = None  # the lemmas training gave its words (LEXICON_FILE)

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        if not isinstance(self.heads, LabelSchema):
            self.heads = LabelSchema(tuple(self.heads))
        learned = transitions_from_meta(self.meta, self.heads, META_FILE)  # --model.crf
        self._decoders = IOB2Decoders(self.heads, learned)

    @property
    def columns(self) -> list[str]:
        """The predicted columns, in the model's order (the first is the classifier's)."""
        return self.heads.columns

    @property
    def label_column(self) -> str:
        """The first predicted column."""
        return self.heads[0].column

    @property
    def labels(self) -> list[str]:
        """The first column's labels."""
        return list(self.heads[0].vocab.labels)

    @classmethod
    def load(
        cls, model_dir: str | Path, batch_size: int = 64, threads: int | None = None, precision: str = "float32"
    ) -> Tagger:
        """Load a model directory written by ``nasty-train export`` (or at the end of ``fit``), or by
        ``nasty-train quantize``, running no code from it. ``threads``: for a quantized model, its ONNX
        Runtime threads (``None``: PyTorch's number of threads, see ``use_threads``). ``precision``: the
        weights' type (``inference_dtype``); a quantized model computes in INT8 whatever it says.

        Where an export or quantize replaces the directory while it is read, it is read again: the tagger
        is always one model's files, never a mix of two."""
        check_batch_size(batch_size)
        dtype = inference_dtype(precision)
        model_dir = Path(model_dir)
        for attempt in range(LOAD_ATTEMPTS):
            before = snapshot(model_dir)
            try:
                tagger, failure = cls._load(model_dir, batch_size, threads, dtype), None
            except Exception as err:  # noqa: BLE001 - raised as it is unless the folder changed meanwhile
                tagger, failure = None, err
            after = snapshot(model_dir)
            if (after == before and after[0] is not None) or attempt == LOAD_ATTEMPTS - 1:
                break
            time.sleep(0.01 * 2**attempt)  # a folder that is not there may be between the renames of a swap
        if failure is not None:
            raise failure
        if after != before:
            raise UserError(
                f"{model_dir} was replaced while it was read, {LOAD_ATTEMPTS} times; try when it is written"
            )
        return tagger

    @classmethod
    def _load(cls, model_dir: Path, batch_size: int, threads: int | None, dtype: torch.dtype) -> Tagger:
        check_model_dir(model_dir)
        meta = read_meta(model_dir) if (model_dir / META_FILE).is_file() else {}
        quantized = check_files(model_dir, meta)
        check_weights(model_dir, meta["max_length"])
        if quantized:
            return cls._load_onnx(model_dir, meta, batch_size, threads)
        sentences_first = meta.get("task") == "text-classification"  # a sequence classifier (pooling.py)
        model = (None if sentences_first else bert_family.load(model_dir)) or _load_transformers(
            model_dir, sentences_first
        )
        model.to(dtype)  # the heads and casing embedding follow the encoder's type when tagging
        schema = LabelSchema.from_model_dir(model.config, meta, model_dir)
        if schema[0].is_sentence != sentences_first:
            raise UserError(f"{model_dir / META_FILE}: its task does not fit its first column, {schema[0].column}")
        hidden, pooling = model.config.hidden_size, meta.get("pooling", "first")
        layers = torch.nn.ModuleDict(
            {h.column: head_layer(h.is_sentence, hidden, len(h.vocab), pooling) for h in schema.heads[1:]}
        )
        if len(schema) > 1:
            _load_weights(layers, model_dir / HEADS_FILE, f"the heads {META_FILE} names")
        casing = casing_embedding(hidden) if "casing" in meta else None
        if casing is not None:
            _load_weights(casing, model_dir / CASING_FILE, "the casing embedding")
        mix = LayerMix(meta["layer_mix"]) if "layer_mix" in meta else None
        if mix is not None:
            _load_weights(mix, model_dir / LAYER_MIX_FILE, "the layer mix")
        chars = CharEncoder(hidden) if "chars" in meta else None
        if chars is not None:
            _load_weights(chars, model_dir / CHARS_FILE, "the character network")
        tokenizer = model_dir_tokenizer(model_dir)
        extras = {"casing": casing, "mix": mix, "chars": chars, "meta": meta, "lexicon": _lexicon(model_dir, schema)}
        return cls(model, tokenizer, schema, meta["max_length"], batch_size, layers, **extras)

    @classmethod
    def _load_onnx(cls, model_dir: Path, meta: dict[str, Any], batch_size: int, threads: int | None) -> Tagger:
        schema = LabelSchema.from_model_dir(_read_config(model_dir), meta, model_dir)
        network = OnnxNetwork.load(model_dir / ONNX_FILE, [len(h.vocab) for h in schema], threads, "chars" in meta)
        tokenizer = model_dir_tokenizer(model_dir)
        lexicon = _lexicon(model_dir, schema)
        return cls(None, tokenizer, schema, meta["max_length"], batch_size, onnx=network, meta=meta, lexicon=lexicon)

    def tag(self, sentences: str | Sequence[str] | Sequence[Sequence[str]]) -> list[list[tuple[str, ...]]]:
        """Tag text: one string, a list of strings (one sentence each), or a list of pre-split sentences.

        Returns one list per sentence, in the order given, of a tuple per word: the word and its value in
        every predicted column, in the order of ``columns`` (``(word, tag)`` for a model of one column); a
        sentence without words (``""``) gets an empty list.
        """
        if isinstance(sentences, str):
            sentences = [sentences]
        words = [split_words(s) if isinstance(s, str) else list(s) for s in sentences]
        predicted = self.predict(words)
        columns = [predicted[c] for c in self.columns]
        return [list(zip(w, *(c[i] for c in columns), strict=True)) for i, w in enumerate(words)]

    def entities(
        self, text: str | Sequence[str] | Sequence[Sequence[str]]
    ) -> list[tuple[str, str, int, int]] | list[list[tuple[str, str, int, int]]]:
        """The named entities of raw text, as (text, type, start, end) with character offsets into ``text``,
        from the model's column of IOB2 tags (its first, if several).

        A list of texts, or of pre-split sentences, is tagged in one batch and gives one such list per item, in
        the order given; for a pre-split sentence, start and end count words (first word, last word + 1) and
        the entity's text is its words joined by spaces."""
        heads = [h for h in self.heads if h.is_entities]
        if not heads:
            raise UserError(f"the model tags {', '.join(self.columns)}, not IOB2 entities")
        items = [text] if isinstance(text, str) else list(text)
        words = [word_spans(t) if isinstance(t, str) else [(w, i, i + 1) for i, w in enumerate(t)] for t in items]
        tags = self.predict([[w for w, _, _ in s] for s in words])[heads[0].column]
        found = []
        for item, item_words, item_tags in zip(items, words, tags, strict=True):
            found.append([])
            for kind, first, end in spans(item_tags):
                start, stop = item_words[first][1], item_words[end - 1][2]
                found[-1].append(
                    (item[start:stop] if isinstance(item, str) else " ".join(item[start:stop]), kind, start, stop)
                )
        return found[0] if isinstance(text, str) else found

    def predict(self, sentences: list[list[str]], progress: bool = False) -> dict[str, list[list[str]]]:
        """Every predicted column's value for every word of every sentence, by column; long sentences are
        tagged window by window, and a word longer than a window by its first subwords.

        ``progress`` shows a progress bar on standard error (when it is a terminal).
        """
        ids: list[list[list[int]]] = [[[] for _ in words] for words in sentences]  # sentence, word, head
        # the sentence heads' summed scores over the sentence's windows (``_pooled_scores``), by sentence
        scores: dict[int, torch.Tensor] = {}
        n_windows: Counter[int] = Counter()
        present = [i for i, words in enumerate(sentences) if words]  # a sentence without words has no tags
        windows = encode([sentences[i] for i in present], self.tokenizer, self.max_length, long_words="truncate")
        windows.sort(key=lambda w: len(w.input_ids))  # similar lengths together: little padding
        with tqdm(total=len(windows), unit="sent", disable=None if progress else True, desc="tagging") as bar:
            for chunk, predicted, pooled in self._batches(windows):
                for window, window_ids, window_scores in zip(chunk, predicted, pooled, strict=True):
                    start, s = window.first_word, present[window.sentence]
                    ids[s][start : start + len(window_ids)] = window_ids
                    scores[s] = window_scores if s not in scores else scores[s] + window_scores
                    n_windows[s] += 1
                bar.update(len(chunk))
        out = {}
        for h, head in enumerate(self.heads):
            if head.is_sentence:  # the label of the best summed score of all the sentence's windows, in a list
                k = self.heads.sentence_heads.index(h)
                if head.multi_label:  # each label whose mean probability over the windows reaches its threshold
                    at_least = self._thresholds(head)
                    chosen = {s: (x[k, : len(at_least)] / n_windows[s] >= at_least).tolist() for s, x in scores.items()}
                    best = {s: head.label_set(sum(1 << i for i, yes in enumerate(c) if yes)) for s, c in chosen.items()}
                else:
                    best = {s: head.vocab.decode(int(x[k].argmax())) for s, x in scores.items()}
                out[head.column] = [[best[s]] if s in best else [] for s in range(len(sentences))]
            else:
                pairs = zip(ids, sentences, strict=True)
                out[head.column] = [head.decode([w[h] for w in s], words) for s, words in pairs]
        if self.lexicon is not None:  # a lemma a word seen in training never had there: its most frequent one
            tags = out[self.lexicon.tag_column] if self.lexicon.tag_column else [None] * len(sentences)
            out[LEMMA] = [self.lexicon.correct(*row) for row in zip(sentences, out[LEMMA], tags, strict=True)]
        return out

    def _thresholds(self, head: Head) -> torch.Tensor:
        """A multi-label head's thresholds, one per label: the model directory's (chosen on validation), or 0.5."""
        values = self.meta.get("thresholds", {}).get(head.column, [0.5] * len(head.vocab))
        if len(values) != len(head.vocab):
            raise UserError(f"{META_FILE}: {len(values)} thresholds for the {len(head.vocab)} labels of {head.column}")
        return torch.tensor(values)

    def classify(self, texts: str | Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, ...]] | tuple[str, ...]:
        """The labels of texts: one string, or a list of strings or of pre-split texts. Returns, per text, a tuple of
        its label in every column that labels sentences, in the order of ``columns`` (a text without words:
        ``()``); for one string, its tuple."""
        columns = [h.column for h in self.heads if h.is_sentence]
        if not columns:
            raise UserError(f"the model tags {', '.join(self.columns)}: words, not whole texts")
        items = [texts] if isinstance(texts, str) else list(texts)
        predicted = self.predict([split_words(t) if isinstance(t, str) else list(t) for t in items])
        labels = [tuple(label for c in columns for label in predicted[c][i]) for i in range(len(items))]
        return labels[0] if isinstance(texts, str) else labels

    @torch.inference_mode()
    def _batches(
        self, windows: list[Window]
    ) -> Iterator[tuple[list[Window], list[list[list[int]]], list[torch.Tensor]]]:
        """Batches of windows, with the label ids of every word for every head, and each window's log-probabilities
        of the labels of every head that labels sentences ((heads, labels); -inf pads the shorter)."""
        if self.onnx is not None:
            network, device = self.onnx, torch.device("cpu")
        else:
            weight = next(self.model.parameters())
            device = weight.device
            pooling = self.meta.get("pooling", "first")
            network = Network(self.model, self.layers, self.casing, pooling, self.mix, self.chars)
            network = network.to(device=device, dtype=weight.dtype)
        # A few sentences of mixed lengths (a server's batch of requests) share rows as long as the longest of
        # them, rather than being padded to it or cut into passes; a file's sorted batches waste little padding.
        packed = network.packs and 1 < len(windows) <= self.batch_size
        if packed:
            chunks = [range(len(windows))]
        else:
            chunks = padded_batches([len(w.input_ids) for w in windows], self.batch_size)
        for rows in chunks:
            chunk = windows[rows.start : rows.stop]
            if packed:
                batch, places = pack(chunk, self.tokenizer.pad_token_id)
            else:
                batch, places = collate(chunk, self.tokenizer.pad_token_id), [(r, 0) for r in range(len(chunk))]
            logits = network.run(batch, device)
            ids = torch.stack([x.argmax(-1) for x in logits], dim=-1).cpu()
            sentence_scores = _pooled_scores([(self.heads[h], logits[h]) for h in self.heads.sentence_heads], places)
            predicted = []
            for window, (r, start) in zip(chunk, places, strict=True):
                at = start + torch.tensor(window.word_starts, dtype=torch.long)
                words = ids[r][at]  # (words, heads)
                if self.constrained and self._decoders:
                    for h, decoded in self._decoders.rows(logits, r, at.to(device)):
                        words[:, h] = torch.tensor(decoded)
                predicted.append(words.tolist())
            yield chunk, predicted, sentence_scores


def _lexicon(model_dir: Path, schema: LabelSchema) -> LemmaLexicon | None:
    data = read_lexicon(model_dir)
    return None if data is None else LemmaLexicon.from_dict(data, str(model_dir / LEXICON_FILE), schema.columns)


def _pooled_scores(logits: list[tuple[Head, torch.Tensor]], places: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Each window's scores of the labels of the heads that label sentences, read at the window's first position,
    as one (heads, labels) tensor padded to the largest vocabulary: log-probabilities (-inf pads), or for a
    multi-label head the probability of each label (0 pads)."""
    if not logits:
        return [torch.zeros(0, 0) for _ in places]
    width = max(x.shape[-1] for _, x in logits)
    rows = torch.tensor([r for r, _ in places])
    starts = torch.tensor([start for _, start in places])
    per_head = []
    for head, x in logits:
        x = x[rows, starts].float()
        x, pad = (torch.sigmoid(x), 0.0) if head.multi_label else (torch.log_softmax(x, dim=-1), float("-inf"))
        per_head.append(torch.nn.functional.pad(x.cpu(), (0, width - x.shape[-1]), value=pad))
    return list(torch.stack(per_head, dim=1))


def _read_config(model_dir: Path) -> PretrainedConfig | bert_family.Config:
    """The directory's ``config.json``: read by ``bert_family`` where it implements the model, which spares
    the import of transformers (more than a second of start-up), by transformers' ``AutoConfig`` elsewhere."""
    config = bert_family.read_config_file(model_dir)
    if config is not None:
        return config
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {model_dir / CONFIG_FILE} ({_first_line(err)})") from None


def _load_transformers(model_dir: Path, sentences: bool = False) -> PreTrainedModel:
    """The token classifier of a model directory that ``bert_family`` does not implement, or its sequence
    classifier (``sentences``), by transformers."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForSequenceClassification if sentences else AutoModelForTokenClassification
    try:
        return auto.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False).eval()
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise UserError(f"cannot load the model in {model_dir} ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [err.__class__.__name__])[0]
