"""Value tables read from the comments of the files that hold the values.

charts/mlops-kit/values.yaml is documented the helm-docs way: a comment block starting with
``# -- `` directly above a key, continued by the ``#`` lines that follow it, describes that key
(a map value is one row, shown whole); other comments are section notes. Every key with a value
must be described, by its own ``# --`` comment or by one of a map around it.

A role's defaults/main.yml (mlops_docker, mlops_kubernetes) describes each variable by the
comment block directly above it (no blank line between). A variable without a default is written
as a commented-out key with nothing after the colon (``# mlops_env:``).

`make generate` writes the tables of docs/kubernetes.md and docs/docker.md and the descriptions
of the roles' meta/argument_specs.yml from them (scripts/mlopskit/contract.py).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .shell import CommandError

KEY = re.compile(r"^(?P<indent> *)(?P<key>\"[^\"]+\"|'[^']+'|[^\s#:'\"-][^\s:#]*):(?:\s|$)")
DESCRIBED = re.compile(r"^# --(?: |$)")
COMMENTED_KEY = re.compile(r"^# (?P<key>[a-z_][a-z0-9_]*):\s*$")
MISSING = object()


class ValueDocsError(CommandError):
    """A value has no description; the message names the file and the key."""


@dataclass(frozen=True)
class Documented:
    """One row: a dotted key, its default (MISSING: none) and its description on one line."""

    key: str
    description: str
    default: Any = MISSING


def _lookup(data: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return MISSING
        data = data[key]
    return data


def _described(comments: list[str]) -> str | None:
    """The text of the last `# --` block among comments (stripped lines), or None."""
    starts = [index for index, line in enumerate(comments) if DESCRIBED.match(line)]
    if not starts:
        return None
    first, *rest = comments[starts[-1] :]
    lines = [first[4:], *(line[1:] for line in rest)]
    return " ".join(line.strip() for line in lines if line.strip())


def chart_values(text: str, source: str) -> list[Documented]:
    """The described keys of a values.yaml, in file order."""
    data = yaml.safe_load(text) or {}
    rows: list[Documented] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, described or inside a described map)
    comments: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        match = KEY.match(line)
        above, comments = comments, []
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [key for _, key, _ in stack] + [match["key"].strip("\"'")]
        value = _lookup(data, path)
        if value is MISSING:
            continue  # a line inside a list or a block scalar
        description = _described(above)
        covered = description is not None or any(flag for *_, flag in stack)
        stack.append((indent, path[-1], covered))
        if description is not None:
            rows.append(Documented(".".join(path), description, value))
        elif not covered and not (isinstance(value, dict) and value):
            raise ValueDocsError(
                f"{source}: {'.'.join(path)} has no '# -- ' comment describing it "
                "(every value is described; the docs' values table is made from them)"
            )
    return rows


def role_variables(text: str, source: str) -> list[Documented]:
    """The top-level variables of a role's defaults file, each with the comment above it."""
    data = yaml.safe_load(text) or {}
    rows: list[Documented] = []
    comments: list[str] = []
    for line in text.split("\n"):
        commented = COMMENTED_KEY.match(line)
        match = KEY.match(line)
        if commented or (match and not match["indent"]):
            key = commented["key"] if commented else match["key"]  # type: ignore[index]
            if not comments:
                raise ValueDocsError(f"{source}: {key} has no comment directly above it")
            default = MISSING if commented else data[key]
            rows.append(Documented(key, " ".join(c for c in comments if c), default))
            comments = []
        elif line.startswith("#"):
            comments.append(line[1:].strip())
        else:
            comments = []
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def value_cell(value: Any) -> str:
    """A default as the tables show it: JSON in backticks."""
    return f"`{_cell(json.dumps(value))}`"


def table(rows: list[Documented], absent: Mapping[str, str] | None = None) -> str:
    """A Markdown table key | default | description; absent: default cells of MISSING ones."""
    lines = ["| key | default | description |", "|---|---|---|"]
    for row in rows:
        default = (absent or {}).get(row.key, "—") if row.default is MISSING else None
        cell = default if default is not None else value_cell(row.default)
        lines.append(f"| `{row.key}` | {cell} | {_cell(row.description)} |")
    return "\n".join(lines)


def _is_plain(text: str) -> bool:
    """Whether text reads back as itself as a plain (unquoted) YAML value."""
    try:
        return yaml.safe_load(f"k: {text}") == {"k": text}
    except yaml.YAMLError:
        return False


def _description_lines(text: str, indent: str, width: int = 100) -> list[str]:
    value = text if _is_plain(text) else json.dumps(text, ensure_ascii=False)
    if len(single := f"{indent}description: {value}") <= width:
        return [single]
    wrapped = textwrap.wrap(text, width - len(indent) - 2, break_on_hyphens=False)
    return [f"{indent}description: >-", *(f"{indent}  {line}" for line in wrapped)]


def set_option_descriptions(text: str, variables: list[Documented], source: str) -> str:
    """Set the description of every option of every entry point of argument_specs.

    The other keys of an option (type, choices, required, ...) stay as they are; a default is
    refused (ansible takes it from the role defaults, not from here). Each option must have a
    variable and each variable must be an option of at least one entry point.
    """
    descriptions = {v.key: v.description for v in variables}
    lines = text.rstrip("\n").split("\n")
    if "    options:" not in lines:
        raise ValueDocsError(f"{source}: no '    options:' line (argument_specs.main)")
    entries = yaml.safe_load(text)["argument_specs"]
    options = {entry: (spec or {}).get("options") or {} for entry, spec in entries.items()}
    for entry, specs in options.items():
        if missing := [name for name in specs if name not in descriptions]:
            raise ValueDocsError(
                f"{source}: option(s) {', '.join(missing)} not in the role defaults "
                f"(entry point {entry})"
            )
        if copied := [name for name, spec in specs.items() if "default" in spec]:
            raise ValueDocsError(
                f"{source}: option(s) {', '.join(copied)} of entry point {entry} have a default: "
                "ansible takes it from the role defaults (defaults/main.yml), only there"
            )
    known = {name for names in options.values() for name in names}
    if extra := [name for name in descriptions if name not in known]:
        raise ValueDocsError(f"{source}: no option for {', '.join(extra)} (role defaults)")
    result, index, in_options = [], 0, False
    while index < len(lines):
        option = _option(lines[index]) if in_options else None
        if option is None:
            in_options = lines[index] == "    options:"
            result.append(lines[index])
            index += 1
            continue
        body_end = index + 1
        while body_end < len(lines) and (
            not lines[body_end].strip() or lines[body_end].startswith(" " * 8)
        ):
            body_end += 1
        body = _without_description(lines[index + 1 : body_end])
        result += [lines[index], *body, *_description_lines(descriptions[option], " " * 8)]
        index = body_end
    return "\n".join(result) + "\n"


def _option(line: str) -> str | None:
    """The name of the option a line of an entry point's options starts, or None."""
    match = KEY.match(line)
    return match["key"] if match and len(match["indent"]) == 6 else None


def _without_description(body: list[str]) -> list[str]:
    kept, skipping = [], False
    for line in body:
        if line.startswith("        description:"):
            skipping = True
            continue
        if skipping and (line.startswith(" " * 9) or line.startswith("        - ")):
            continue
        skipping = False
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept
