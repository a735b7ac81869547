"""Using a trained model: ``Tagger``, ONNX and INT8 quantization, export to a model directory, and the HTTP server."""
