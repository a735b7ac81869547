"""The package's layers (docs/architecture.md): every import goes to the same layer or one below it, and no
module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "nasty_lightning"
# Lower layers first; training and inference are siblings, and neither imports the other.
RANK = {"_compat": 0, "errors": 0, "formats": 1, "labels": 2, "data": 3, "modelling": 4, "training": 5, "inference": 5}
RANK["commands"] = 6


def _modules() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The nasty_lightning modules ``path`` imports: everywhere, or only when it is itself imported (at module
    level, outside ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    if top_level_only:
        nodes = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nasty_lightning"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nasty_lightning")}
    return found & set(_modules())


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_module_belongs_to_a_layer():
    assert {_layer(m) for m in _modules()} - {""} <= set(RANK)


def test_imports_go_to_the_same_layer_or_below():
    wrong = []
    for module, path in _modules().items():
        source = _layer(module)
        if not source:  # the package itself: its public names, imported on first use
            continue
        for target in _imports(path, top_level_only=False):
            dest = _layer(target)
            if not dest or RANK[dest] > RANK[source] or (RANK[dest] == RANK[source] and dest != source):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {m: _imports(p, top_level_only=True) - {m} for m, p in _modules().items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*trail, module, target])
            if target not in state:
                visit(target, [*trail, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
