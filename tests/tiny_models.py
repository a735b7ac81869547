"""Tiny random encoders built offline, with tokenizers trained on the fly.

Each builder writes a Hugging Face model directory (config, random weights, tokenizer files) that
``from_pretrained`` loads like a hub model. The tokenizers are trained with the ``tokenizers``
library on a small corpus and wrapped in the real transformers classes, so the code under test
sees exactly the tokenizer types it meets with real checkpoints. Every build gives the same files:
the ``tokenizers`` trainers break ties differently from run to run, so the WordPiece vocabulary is
counted here and the Unigram pieces are put in a fixed order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertTokenizer,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaTokenizer,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    XLMRobertaTokenizer,
)

CORPUS = [
    "The cat sat on the mat .",
    "A dog barked at the postman , who ran away !",
    "Unbelievably , internationalization works in Zürich and São Paulo .",
    "Les élèves étudient la grammaire française .",
    "I can't believe it's not butter ; really ?",
    "Numbers like 3.14 and 2,000 appear in text .",
] * 20

# 512 usable positions, as the real models: the default --data.max_length fits.
SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def build_bert(path: Path, vocab_size: int = 200, cased: bool = True) -> Path:
    """WordPiece tokenizer plus a 2-layer BERT."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = BertTokenizer(vocab=_wordpiece_vocab(specials, vocab_size), do_lower_case=not cased)
    config = BertConfig(vocab_size=len(tokenizer.get_vocab()), max_position_embeddings=512, **SIZE)
    return _save(path, BertForMaskedLM, config, tokenizer)


def _wordpiece_vocab(specials: list[str], size: int) -> dict[str, int]:
    """Every character of the corpus, alone and as a continuation (so any word of them is spelled), then
    its words, alone and as continuations, most frequent first (ties in alphabetical order), up to ``size``
    entries."""
    pieces = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for line in CORPUS for w, _ in pieces.pre_tokenize_str(line))
    chars = sorted({c for w in words for c in w})
    frequent = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    tokens = specials + chars + ["##" + c for c in chars] + [t for w in frequent for t in (w, "##" + w)]
    return {t: i for i, t in enumerate(tokens[:size])}


def build_roberta(path: Path, vocab_size: int = 300) -> Path:
    """Byte-level BPE tokenizer plus a 2-layer RoBERTa."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    spec = tok.to_str()
    import json

    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(spec)["model"]["merges"]]
    tokenizer = RobertaTokenizer(vocab=tok.get_vocab(), merges=merges)
    config = RobertaConfig(
        vocab_size=len(tok.get_vocab()),
        max_position_embeddings=514,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **SIZE,
    )
    return _save(path, RobertaForMaskedLM, config, tokenizer)


def build_xlmr(path: Path, vocab_size: int = 300) -> Path:
    """Unigram (SentencePiece-style) tokenizer plus a 2-layer XLM-R."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    import json

    trained = [tuple(pair) for pair in json.loads(tok.to_str())["model"]["vocab"]]
    vocab = trained[: len(specials)] + sorted(trained[len(specials) :], key=lambda pair: (-pair[1], pair[0]))
    tokenizer = XLMRobertaTokenizer(vocab=vocab)
    config = XLMRobertaConfig(
        vocab_size=len(vocab), max_position_embeddings=514, pad_token_id=1, bos_token_id=0, eos_token_id=2, **SIZE
    )
    return _save(path, XLMRobertaForMaskedLM, config, tokenizer)


def _save(path: Path, model_class, config, tokenizer) -> Path:
    """Write the model with random weights from a fixed seed (a failure seen once can be seen again, and the
    suite's workers, pytest-xdist, test the same models) and its tokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model_class(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
