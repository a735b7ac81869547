"""From sentences to batches: subword encoding and windows, tokenizers, batching, packing, sampling, the encoding
cache and the Lightning data module."""
