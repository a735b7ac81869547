"""The label schema: the columns a model predicts, each with its kind and vocabulary; lemma edit scripts; entity
spans and their scores. Plain Python, no PyTorch."""
