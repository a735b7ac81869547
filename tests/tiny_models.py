"""Tiny random encoders built offline, with tokenizers trained on the fly.

Each builder writes a Hugging Face model directory (config, random weights, tokenizer files) that
``from_pretrained`` loads like a hub model. The tokenizers are trained with the ``tokenizers``
library on a small corpus and wrapped in the real transformers classes, so the code under test
sees exactly the tokenizer types it meets with real checkpoints.
"""

from __future__ import annotations

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
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tokenizer = BertTokenizer(vocab=tok.get_vocab(), do_lower_case=not cased)
    config = BertConfig(vocab_size=len(tok.get_vocab()), max_position_embeddings=512, **SIZE)
    return _save(path, BertForMaskedLM, config, tokenizer)


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

    vocab = [tuple(pair) for pair in json.loads(tok.to_str())["model"]["vocab"]]
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
