"""The one place where nasty_lightning touches other libraries' private or undocumented internals.

Everything else uses public APIs only (``tests/test_compat_fence.py`` checks it). Each module here is one
library's: small named functions and classes, each saying which internal it relies on and since which
version, with a test in ``tests/_compat/`` that fails, naming the internal, when the installed version of
that library changes it; ``pyproject.toml`` bounds each such library's version.
"""
