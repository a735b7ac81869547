"""Other libraries' private internals are touched in ``nasty_lightning/_compat`` only (docs/architecture.md): no
other module imports a private name or module of a library, reads a private attribute of something it imported
from one, or uses or overrides a private member of a library class it subclasses."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "nasty_lightning"
LIBRARIES = (
    "lightning pytorch_lightning lightning_fabric lightning_utilities transformers tokenizers litserve jsonargparse "
    "argparse uvicorn starlette fastapi pydantic torch torchmetrics onnx onnxruntime onnxscript".split()
)
# Internals this package used before the fence (issue 33), and names that only mean one: none may come back.
KNOWN = re.compile(
    r"_should_check_val|_parse_ckpt_path|_prepare_subcommand_parser|_subcommand_parsers|\._actions\b|\._leave\b"
    r"|_check_log_dir_exists|\bself\._get\(|\bsuper\(\)\._[a-z]|integrations\.|masking_utils|[.\"']_attn_implementation"
    r"|_SENTINEL_VALUE|_StopLoopError|\buser_middleware\b|\binference_workers\b|on_response_complete|\.cycle\b"
    r"|subcommand_parser\"|AutoHTTPProtocol"
)


def _sources() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1:2] != ("_compat",):
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in LIBRARIES


def test_no_module_outside_compat_names_a_known_internal():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in _sources().values()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if KNOWN.search(line.split("#")[0])
    ]
    assert not found, "move these into nasty_lightning/_compat:\n" + "\n".join(found)


def test_no_module_outside_compat_imports_or_reads_a_library_private_name():
    found = []
    for path in _sources().values():
        tree = ast.parse(path.read_text())
        imported = set()  # names bound to a library's modules, classes and functions
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _library(node.module):
                names = [a.name for a in node.names]
                if any(_private(part) for part in node.module.split(".")) or any(map(_private, names)):
                    found.append(f"{path.name}:{node.lineno}: from {node.module} import {', '.join(names)}")
                imported |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _library(alias.name):
                        if any(_private(part) for part in alias.name.split(".")):
                            found.append(f"{path.name}:{node.lineno}: import {alias.name}")
                        imported.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                root = node.value
                while isinstance(root, ast.Attribute | ast.Call | ast.Subscript):
                    root = root.func if isinstance(root, ast.Call) else root.value
                if isinstance(root, ast.Name) and root.id in imported:
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "move these into nasty_lightning/_compat:\n" + "\n".join(found)


def _library_members(cls: type) -> dict[str, str]:
    """The private names that ``cls``'s library base classes define or set on ``self``, and where."""
    members = {}
    for base in cls.__mro__[1:]:
        if not _library(base.__module__):
            continue
        for name in vars(base):
            members.setdefault(name, base.__qualname__)
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        for name in re.findall(r"\bself\.(_\w+)", source):
            members.setdefault(name, base.__qualname__)
    return {k: v for k, v in members.items() if _private(k)}


@pytest.mark.parametrize("module", sorted(_sources()))
def test_no_class_uses_or_overrides_a_private_member_of_its_library_base(module):
    classes = {
        c.__qualname__: c
        for c in vars(importlib.import_module(module)).values()
        if inspect.isclass(c) and c.__module__ == module
    }
    tree = ast.parse(_sources()[module].read_text())
    found = []
    for node in ast.walk(tree):
        cls = classes.get(node.name) if isinstance(node, ast.ClassDef) else None
        if cls is None:
            continue
        private = _library_members(cls)
        used = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and n.attr in private}
        defined = {n.name for n in node.body if isinstance(n, ast.FunctionDef) and n.name in private}
        found += [f"{module}.{node.name}: {name} of {private[name]}" for name in sorted(used | defined)]
    assert not found, "move these into nasty_lightning/_compat:\n" + "\n".join(found)
