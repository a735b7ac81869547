"""Labelling texts without training: each text gets the label whose name (or description) its embedding is
closest to.

A sentence encoder (MiniLM, ``all-MiniLM-L6-v2``, was trained for this) embeds a text as the mean of its last
hidden states over its subwords, normalised to length 1; the score of a label is the cosine of the text's
embedding and the label's (the embedding of its description, or of its name). A text longer than the encoder's
``max_length`` is embedded window by window, and the windows' embeddings are averaged: nothing is cut. What a
fine-tuned model gains over this is what ``eval --zero_shot_labels`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from nasty_lightning.data.encoding import load_tokenizer, special_tokens
from nasty_lightning.errors import UserError
from nasty_lightning.formats.presets import locate_model
from nasty_lightning.formats.untrusted import check_model_dir, is_checkpoint

DEFAULT_MAX_LENGTH = 256  # all-MiniLM-L6-v2's sentence-transformers max_seq_length: what it was trained on


def label_texts(labels: Sequence[str] | Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The label names and the texts that stand for them: ``{name: description}``, or names that are their own."""
    if isinstance(labels, Mapping):
        names, texts = list(labels), [str(v) for v in labels.values()]
    else:
        names = texts = [str(label) for label in labels]
    if len(names) < 2:
        raise UserError(f"--zero_shot_labels needs at least two labels, got {names}")
    if len(set(names)) < len(names):
        raise UserError(f"--zero_shot_labels names a label twice: {names}")
    bad = next((t for t in texts if not t.strip()), None)
    if bad is not None:
        raise UserError("--zero_shot_labels has an empty label or description")
    return names, texts


class ZeroShotClassifier:
    """A pretrained encoder (``model_name``: a preset, hub id or local directory) that labels texts by the
    similarity of their embeddings to those of ``labels``; ``tag`` writes them as the column ``label_column``."""

    def __init__(
        self,
        model_name: str,
        labels: Sequence[str] | Mapping[str, str],
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 64,
        label_column: str = "label",
    ) -> None:
        from transformers import AutoModel

        self.labels, descriptions = label_texts(labels)
        source = locate_model(model_name)
        if is_checkpoint(source):
            raise UserError(f"{model_name} is a checkpoint: zero-shot labelling takes a pretrained encoder")
        check_model_dir(source)
        self.tokenizer = load_tokenizer(source)
        self.model = AutoModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False).eval()
        if max_length < 3:
            raise UserError(f"--max_length must be at least 3, got {max_length}")
        self.max_length, self.batch_size = max_length, batch_size
        self.columns = [label_column]  # what ``tag`` writes: one label column
        self.label_embeddings = self.embed(descriptions)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """(texts, hidden) unit vectors: each text's mean-pooled last hidden states, its windows' averaged."""
        prefix, suffix = special_tokens(self.tokenizer)
        budget = self.max_length - len(prefix) - len(suffix)
        windows, owner = [], []
        for i, ids in enumerate(self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]):
            for start in range(0, max(len(ids), 1), budget):
                windows.append(prefix + ids[start : start + budget] + suffix)
                owner.append(i)
        order = sorted(range(len(windows)), key=lambda w: len(windows[w]))  # little padding
        pooled = torch.zeros(len(windows), self.model.config.hidden_size)
        pad = self.tokenizer.pad_token_id or 0
        for at in range(0, len(order), self.batch_size):
            rows = order[at : at + self.batch_size]
            width = max(len(windows[r]) for r in rows)
            ids = torch.full((len(rows), width), pad)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                ids[k, : len(windows[r])], mask[k, : len(windows[r])] = torch.tensor(windows[r]), 1
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask[..., None].to(hidden.dtype)
            pooled[rows] = ((hidden * weights).sum(1) / weights.sum(1)).float()
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        texts_embedded = torch.zeros(len(texts), pooled.shape[1]).index_add_(0, torch.tensor(owner), pooled)
        return torch.nn.functional.normalize(texts_embedded, dim=-1)

    def classify(self, texts: str | Sequence[str]) -> str | list[str]:
        """The best label of each text (of one text, for a string)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        scores = self.embed(items) @ self.label_embeddings.T
        best = [self.labels[i] for i in scores.argmax(-1).tolist()]
        return best[0] if isinstance(texts, str) else best

    def predict(self, sentences: list[list[str]], progress: bool = False) -> dict[str, list[list[str]]]:
        """``Tagger.predict``'s form, for ``tag``: each sentence's label (its words joined by spaces), in a list."""
        labels = self.classify([" ".join(words) for words in sentences]) if sentences else []
        return {self.columns[0]: [[label] if words else [] for label, words in zip(labels, sentences, strict=True)]}
