"""Every test the README and docs/ cite as evidence exists: the file, and the test function where one is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
CITED = re.compile(r"\btests/[\w/]+\.py(?:::\w+)?")
NAMED = re.compile(r"`(test_\w+)`")  # a test named alone, after the file cited before it


def test_every_cited_test_file_and_function_exists():
    missing = []
    defined = {
        m for p in (ROOT / "tests").rglob("test_*.py") for m in re.findall(r"^def (test_\w+)\(", p.read_text(), re.M)
    }
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for cited in sorted(set(CITED.findall(doc.read_text()))):
            path, _, function = cited.partition("::")
            source = (ROOT / path).read_text() if (ROOT / path).is_file() else None
            if source is None or (function and not re.search(rf"^def {function}\(", source, re.M)):
                missing.append(f"{doc.name}: {cited}")
        for name in sorted(set(NAMED.findall(doc.read_text())) - defined):
            missing.append(f"{doc.name}: {name}")
    assert not missing, "\n".join(missing)
