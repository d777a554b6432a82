"""The value tables made from comments: values.yaml read the helm-docs way, the roles' defaults
read comment by comment, the option descriptions of argument_specs.yml (every entry point), and
the repo's generated tables being fresh and reached in one run."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlopskit import contract as contract_module
from mlopskit.contract import (
    CHART_VALUES,
    CONTRACT_FILE,
    DOCS,
    GENERATED,
    KUBERNETES_DEFAULTS,
    KUBERNETES_SPECS,
    load_contract,
    parse_contract,
)
from mlopskit.value_docs import (
    MISSING,
    Documented,
    ValueDocsError,
    chart_values,
    role_variables,
    set_option_descriptions,
    table,
)

VALUES = """\
# Header note of the file.

# -- Override the name.
nameOverride: ""
# A section note, not a description.
server:
  # -- Replicas of the
  # server, when autoscaling
  # is off.
  replicas: 1
  image:
    # -- Image tag.
    tag: "1.0"
  # -- Resources of the server.
  resources:
    requests: {cpu: 100m, memory: 256Mi}
    limits:
      memory: 1Gi
  # -- The people, e.g. [{name: alice}].
  people:
    - name: alice
      role: reader
"""


def test_chart_values_reads_keys_defaults_and_joined_descriptions() -> None:
    rows = chart_values(VALUES, "values.yaml")
    assert rows == [
        Documented("nameOverride", "Override the name.", ""),
        Documented("server.replicas", "Replicas of the server, when autoscaling is off.", 1),
        Documented("server.image.tag", "Image tag.", "1.0"),
        Documented(
            "server.resources",
            "Resources of the server.",
            {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        ),
        Documented(
            "server.people",
            "The people, e.g. [{name: alice}].",
            [{"name": "alice", "role": "reader"}],
        ),
    ]


def test_a_section_note_before_the_description_is_not_part_of_it() -> None:
    text = "a:\n  # Extension points.\n  # -- Extra env.\n  extraEnv: []\n"
    assert chart_values(text, "v") == [Documented("a.extraEnv", "Extra env.", [])]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("# plain note only\nname: x\n", "name"),
        ("server:\n  # -- Documented.\n  a: 1\n  b: {}\n", "server.b"),
        ("server:\n  image:\n    # note\n\n    tag: '1'\n", "server.image.tag"),
        ("# -- Described, but a blank line follows.\n\nname: x\n", "name"),
    ],
)
def test_a_value_without_a_description_is_an_error_naming_it(text: str, key: str) -> None:
    with pytest.raises(ValueDocsError, match=rf"v: {key} has no '# -- ' comment"):
        chart_values(text, "v")


def test_table_shows_defaults_as_json_and_escapes_pipes() -> None:
    rows = [
        Documented("a.b", "One | two.", {"x": "1Gi"}),
        Documented("c", "Needed.", MISSING),
        Documented("d", "Unset.", MISSING),
    ]
    assert table(rows, {"c": "— (required)"}).split("\n") == [
        "| key | default | description |",
        "|---|---|---|",
        '| `a.b` | `{"x": "1Gi"}` | One \\| two. |',
        "| `c` | — (required) | Needed. |",
        "| `d` | — | Unset. |",
    ]


DEFAULTS = """\
# Settings of the role (a note: a blank line follows it).

# Name of the environment;
# no default.
# x_env:

# Host port.
x_port: 5000
# Prefix of objects.
x_prefix: "x-{{ x_env }}"
"""


def test_role_variables_reads_the_comment_above_each_variable() -> None:
    assert role_variables(DEFAULTS, "d") == [
        Documented("x_env", "Name of the environment; no default.", MISSING),
        Documented("x_port", "Host port.", 5000),
        Documented("x_prefix", "Prefix of objects.", "x-{{ x_env }}"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "# Port.\nx_port: 1\nx_other: 2\n",  # two variables under one comment
        "# Port.\nx_port: 1\n\nx_other: 2\n",
        "# A note.\n\n# x_other:\n",
    ],
)
def test_a_role_variable_without_its_own_comment_is_an_error(text: str) -> None:
    with pytest.raises(ValueDocsError, match="d: x_other has no comment directly above it"):
        role_variables(text, "d")


SPECS = """\
argument_specs:
  main:
    short_description: A role
    options:
      x_env:
        type: str
        required: true
        description: Old text.
      x_port:
        type: int
        description: >-
          Old folded
          text.
        choices: [1, 2]
      x_prefix:
        type: str
"""
VARIABLES = [
    Documented("x_env", "Name: of the environment.", MISSING),
    Documented("x_port", "Host port.", 5000),
    Documented("x_prefix", "Prefix " + "of every object " * 10 + "made.", "x"),
]


def test_option_descriptions_are_replaced_and_the_other_keys_kept() -> None:
    new = set_option_descriptions(SPECS, VARIABLES, "s")
    options = yaml.safe_load(new)["argument_specs"]["main"]["options"]
    assert options == {
        "x_env": {"type": "str", "required": True, "description": "Name: of the environment."},
        "x_port": {"type": "int", "choices": [1, 2], "description": "Host port."},
        "x_prefix": {"type": "str", "description": VARIABLES[2].description},
    }
    assert max(len(line) for line in new.split("\n")) <= 100
    assert 'description: "Name: of the environment."' in new
    assert "Old" not in new
    assert set_option_descriptions(new, VARIABLES, "s") == new


def test_a_default_in_argument_specs_is_refused() -> None:
    specs = SPECS.replace("      x_prefix:\n", "      x_prefix:\n        default: x\n")
    message = r"s: option\(s\) x_prefix of entry point main have a default"
    with pytest.raises(ValueDocsError, match=message):
        set_option_descriptions(specs, VARIABLES, "s")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (VARIABLES[:2], r"s: option\(s\) x_prefix not in the role defaults"),
        ([*VARIABLES, Documented("x_new", "New.", 1)], r"s: no option for x_new"),
    ],
)
def test_options_and_variables_must_match(variables: list[Documented], message: str) -> None:
    with pytest.raises(ValueDocsError, match=message):
        set_option_descriptions(SPECS, variables, "s")


DESTROY = """\
  destroy:
    short_description: Remove
    options:
      x_env:
        type: str
        description: Old.
      x_purge:
        type: bool
"""


def test_every_entry_point_gets_its_descriptions() -> None:
    variables = [*VARIABLES, Documented("x_purge", "Delete the data too.", MISSING)]
    new = set_option_descriptions(SPECS + DESTROY, variables, "s")
    entries = yaml.safe_load(new)["argument_specs"]
    assert entries["destroy"]["options"] == {
        "x_env": {"type": "str", "description": "Name: of the environment."},
        "x_purge": {"type": "bool", "description": "Delete the data too."},
    }
    assert entries["main"]["options"]["x_port"]["description"] == "Host port."
    assert entries["destroy"]["short_description"] == "Remove"


def test_an_option_of_another_entry_point_needs_a_variable_too() -> None:
    message = r"s: option\(s\) x_purge not in the role defaults \(entry point destroy\)"
    with pytest.raises(ValueDocsError, match=message):
        set_option_descriptions(SPECS + DESTROY, VARIABLES, "s")


# ---------- the repository ----------


def test_generate_check_passes_on_the_repository() -> None:
    assert contract_module.generate(check=True) == []


def test_every_value_of_the_chart_has_a_row() -> None:
    rows = {row.key for row in chart_values(CHART_VALUES.read_text(), "values.yaml")}

    def leaves(node: Any, path: str) -> list[str]:
        if isinstance(node, dict) and node and path not in rows:
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}.{k}".lstrip("."))]
        return [path]

    values = yaml.safe_load(CHART_VALUES.read_text())
    assert [leaf for leaf in leaves(values, "") if leaf not in rows] == []
    doc = (DOCS / "kubernetes.md").read_text()
    assert all(f"| `{key}` |" in doc for key in rows)


def test_one_run_reaches_the_fixed_point_after_a_source_changes() -> None:
    """A new contract default and a new comment reach the docs in the same run as their files."""
    raw = copy.deepcopy(yaml.safe_load(CONTRACT_FILE.read_text()))
    ttl = next(
        s
        for s in raw["images"]["mlflow"]["settings"]
        if s["name"] == "MLFLOW_AUTH_CACHE_TTL_SECONDS"
    )
    ttl["default"] = 61
    changed = parse_contract(raw)
    texts: dict[Path, str] = {path: path.read_text() for path in GENERATED}
    texts[CHART_VALUES] = texts[CHART_VALUES].replace(
        "# -- Its port.\n  port: 22", "# -- Port of the external SFTP server.\n  port: 22"
    )
    defaults = contract_module.DOCKER_DEFAULTS
    texts[defaults] = texts[defaults].replace(
        "# Host port of the SFTP server", "# Published port of the SFTP server"
    )
    texts[KUBERNETES_DEFAULTS] = texts[KUBERNETES_DEFAULTS].replace(
        "# kubeconfig context; empty: the current context.", "# Context of the kubeconfig."
    )
    once = contract_module.render_all(changed, texts)
    assert contract_module.render_all(changed, once) == once
    kubernetes, docker = once[DOCS / "kubernetes.md"], once[DOCS / "docker.md"]
    assert "| `mlflow.auth.cacheTtlSeconds` | `61` |" in kubernetes
    assert "| `externalSftp.port` | `22` | Port of the external SFTP server. |" in kubernetes
    assert "| `mlops_docker_auth_cache_ttl_seconds` | `61` |" in docker
    assert "| `mlops_docker_sftp_port` | `2222` | Published port of the SFTP server" in docker
    assert "Published port of the SFTP server" in once[contract_module.DOCKER_SPECS]
    assert '| `mlops_kubernetes_context` | `""` | Context of the kubeconfig. |' in kubernetes
    assert "description: Context of the kubeconfig." in once[KUBERNETES_SPECS]


def _spec_options(text: str) -> set[str]:
    entries = yaml.safe_load(text)["argument_specs"]
    return {name for entry in entries.values() for name in entry.get("options", {})}


def test_every_option_of_the_kubernetes_role_is_documented_in_its_defaults() -> None:
    variables = role_variables(KUBERNETES_DEFAULTS.read_text(), "defaults")
    options = _spec_options(KUBERNETES_SPECS.read_text())
    assert {"mlops_env", "mlops_target", "mlops_purge", "mlops_kubernetes_access"} <= options
    assert {v.key for v in variables} == options
    doc = (DOCS / "kubernetes.md").read_text()
    assert all(f"| `{v.key}` | " in doc for v in variables)


@pytest.mark.parametrize(
    ("path", "old", "new", "message"),
    [
        (  # an option added to argument_specs without a variable in defaults/main.yml
            KUBERNETES_SPECS,
            "    options:\n",
            "    options:\n      mlops_kubernetes_new:\n        type: str\n",
            r"mlops_kubernetes/meta/argument_specs.yml: option\(s\) mlops_kubernetes_new not in "
            r"the role defaults \(entry point main\)",
        ),
        (  # the commented-out key of a destroy-only option dropped from defaults/main.yml
            KUBERNETES_DEFAULTS,
            "# mlops_purge:\n",
            "",
            r"option\(s\) mlops_purge not in the role defaults \(entry point destroy\)",
        ),
    ],
)
def test_a_kubernetes_option_without_a_documented_variable_fails_generate(
    path: Path, old: str, new: str, message: str
) -> None:
    texts: dict[Path, str] = {p: p.read_text() for p in GENERATED}
    assert old in texts[path]
    texts[path] = texts[path].replace(old, new, 1)
    with pytest.raises(ValueDocsError, match=message):
        contract_module.render_all(load_contract(), texts)
