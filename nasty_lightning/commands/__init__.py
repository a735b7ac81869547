"""The ``nasty-train`` program: the command line (LightningCLI for fit, validate and test; eval, tag, export,
quantize, serve) and what it prints."""
