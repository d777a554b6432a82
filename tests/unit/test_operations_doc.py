"""docs/operations.md promises that `make test` runs every command of its `sh` blocks: each one
must match a call in tests/e2e or tests/cluster (same make target and the same variables, or
the same program and options), and each make target must exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = REPO_ROOT / "docs" / "operations.md"
E2E_SOURCES = "\n".join(
    p.read_text()
    for suite in ("e2e", "cluster")
    for p in sorted((REPO_ROOT / "tests" / suite).glob("*.py"))
)
MAKEFILES = "\n".join(
    p.read_text() for p in [REPO_ROOT / "Makefile", *sorted((REPO_ROOT / "mk").glob("*.mk"))]
)
# Targets that `make test` runs as prerequisites rather than from tests/e2e.
PREREQUISITES = {"images": "test-images: images"}


def runbook_commands() -> list[list[str]]:
    blocks = re.findall(r"^```sh\n(.*?)^```", RUNBOOK.read_text(), flags=re.M | re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def e2e_make_calls() -> dict[str, list[set[str]]]:
    calls: dict[str, list[set[str]]] = {}
    for target, args in re.findall(r'make\(\s*"([a-z-]+)"([^\n]*)', E2E_SOURCES):
        calls.setdefault(target, []).append(set(re.findall(r"([A-Z_]+)=", args)))
    return calls


def test_the_runbook_has_commands() -> None:
    assert len(runbook_commands()) >= 8


@pytest.mark.parametrize("command", runbook_commands(), ids=shlex.join)
def test_every_runbook_command_is_run_by_the_tests(command: list[str]) -> None:
    if command[0] == "make":
        target = command[1]
        variables = {word.split("=", 1)[0] for word in command[2:]}
        assert re.search(rf"^{target}:", MAKEFILES, flags=re.M), f"no make target {target}"
        if target in PREREQUISITES:
            assert PREREQUISITES[target] in MAKEFILES
            return
        assert variables in e2e_make_calls().get(target, []), (
            f"tests/e2e never runs `make {target}` with exactly {sorted(variables)}"
        )
    else:
        # The program and its options, up to the first path or name.
        fixed = []
        for word in command:
            if "/" in word or "prod" in word:
                break
            fixed.append(word)
        literal = ", ".join(f'"{word}"' for word in fixed)
        assert f"[{literal}" in E2E_SOURCES, f"tests/e2e never runs {' '.join(fixed)}"
