"""The network: BERT-family encoders in plain PyTorch, the casing embedding, CPU dropout, IOB2 decoding and the
precision the hardware computes natively."""
