"""Shared pytest set-up: every fixture module in tests/plugins/ is registered."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"tests.plugins.{path.stem}"
    for path in (Path(__file__).parent / "plugins").glob("*.py")
    if path.stem != "__init__"
)
