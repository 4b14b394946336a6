"""The layout the README promises: apps of a fair size that import each other only at the top.

The layers themselves (which app may import which) are import-linter's contract in
pyproject.toml, checked by `make lint`; these tests keep what import-linter cannot see.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ["common", "stats", "organisations", "audiences", "campaigns", "tracking", "reports", "api", "cobalt_mail"]
LARGEST_SHARE = 0.40


def app_sources(app: str) -> list[Path]:
    return [path for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts]


def code_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def imports_inside_functions(path: Path) -> list[str]:
    """``module:line imported`` for each import of a project app inside a function body."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.split(".")[0] in APPS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_no_app_holds_more_than_forty_percent_of_the_code():
    sizes = {app: sum(code_lines(path) for path in app_sources(app)) for app in APPS}
    total = sum(sizes.values())
    shares = {app: round(size / total, 3) for app, size in sizes.items()}
    assert max(shares.values()) <= LARGEST_SHARE, shares


def test_no_module_imports_a_project_app_inside_a_function():
    """A function-level import hides a dependency (often a cycle) from readers and import-linter.

    The one kind allowed: ``AppConfig.ready`` (Django's place for start-up wiring), in apps.py.
    """
    found = [
        hit
        for app in APPS
        for path in app_sources(app)
        if path.name != "apps.py"
        for hit in imports_inside_functions(path)
    ]
    assert found == []
