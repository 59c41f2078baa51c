"""docs/scenarios.md shows the shipped request files verbatim."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_scenario_requests_are_the_shipped_files() -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    files = sorted((ROOT / "rescues").glob("*.yaml"))
    assert len(files) == 3
    for path in files:
        block = text.split(f"`rescues/{path.name}`:\n\n```yaml\n", 1)[1].split("```", 1)[0]
        assert block == path.read_text(encoding="utf-8"), path.name
