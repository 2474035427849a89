"""The layout's import rules, checked on the source (docs/architecture.md, "Import rules").

- ``service/core`` is the shared core: it imports nothing from ``service.api``, ``service.cli``
  or ``workers``; the settings import no feature module (features parse their own files).
- ``service/api`` never imports ``workers`` or ``service.cli`` (the API enqueues by name).
- ``workers`` never imports ``service.api`` or ``service.cli``.
- ``sandbox`` is a stand-in for Graph and Entra: it imports nothing of the service.
- Nothing of the runtime imports ``sandbox`` or a test module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "service/core": ("service.api", "service.cli", "workers", "sandbox", "tests"),
    "service/api": ("workers", "service.cli", "sandbox", "tests"),
    "service/cli": ("workers.workflow", "workers.notify", "sandbox", "tests"),
    "workers": ("service.api", "service.cli", "sandbox", "tests"),
    "sandbox": ("service", "workers", "tests"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _violations(folder: str, banned: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for module in _imports(path):
            if any(module == b or module.startswith(b + ".") for b in banned):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_run_one_way(folder: str) -> None:
    assert _violations(folder, FORBIDDEN[folder]) == []


def test_settings_import_no_feature_module() -> None:
    ours = [m for m in _imports(ROOT / "service/core/settings.py") if m.startswith("service")]
    assert all(m.startswith("service.core.") for m in ours), ours


def test_the_rules_can_fail(tmp_path: Path) -> None:
    """The checker sees a violation when there is one (guards against a vacuous pass)."""
    sample = ROOT / "service/core/keys.py"
    assert "arq.constants" in _imports(sample)
    bad = tmp_path / "bad.py"
    bad.write_text("from workers.graph.client import GraphClient\nimport service.api.app\n")
    assert _imports(bad) == ["workers.graph.client", "service.api.app"]
