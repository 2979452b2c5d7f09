"""The README documents every setting an operator can give (the APP_ variables)."""

from __future__ import annotations

from pathlib import Path

from app.config import AppConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_app_variable_is_in_the_configuration_table() -> None:
    missing = [
        f"APP_{name.upper()}"
        for name in AppConfig.model_fields
        if f"`APP_{name.upper()}`" not in README
    ]
    assert missing == []


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    opening = README.split("\n## ", 1)[0]
    commands = [line for line in opening.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/python -m app serve")
    assert commands[1].endswith(".venv/bin/python -m pytest")
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()
