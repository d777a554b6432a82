"""images/contract.yaml: it parses strictly, the files generated from it are fresh, the images'
entrypoints read exactly its settings, and the Docker role enforces its limits."""

from __future__ import annotations

import ast
import copy
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlopskit import contract as contract_module
from mlopskit.contract import (
    CONTRACT_FILE,
    GENERATED,
    ContractError,
    load_contract,
    parse_contract,
    set_yaml_value,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT = load_contract()
DOCKER_DEFAULTS_FILE = "ansible/roles/mlops_docker/defaults/main.yml"
RAW = yaml.safe_load(CONTRACT_FILE.read_text())
IMAGES = REPO_ROOT / "images"
# Names the shell entrypoints mention that are not settings (an error message's hint).
NOT_SETTINGS = {"POSTGRESQL_MAJOR"}
ENV_READERS = {"_int", "_truthy", "_text", "read_secret", "require_secret", "get", "setdefault"}


def test_every_generated_file_is_fresh() -> None:
    stale = [
        str(path.relative_to(REPO_ROOT))
        for path, (now, new) in contract_module.generated_files(CONTRACT).items()
        if now != new
    ]
    assert not stale, f"{stale} differ from images/contract.yaml: run `make generate`"


def test_generating_twice_changes_nothing() -> None:
    once = contract_module.render_all(CONTRACT, {path: path.read_text() for path in GENERATED})
    twice = contract_module.render_all(CONTRACT, once)
    for path in GENERATED:
        assert twice[path] == once[path], path


def test_a_changed_default_reaches_both_targets() -> None:
    """The freshness check is not vacuous: a new TTL default makes every target stale."""
    raw = copy.deepcopy(RAW)
    ttl = next(
        s
        for s in raw["images"]["mlflow"]["settings"]
        if s["name"] == "MLFLOW_AUTH_CACHE_TTL_SECONDS"
    )
    ttl["default"] = 61
    changed = parse_contract(raw)
    stale = {
        path.name
        for path, (now, new) in contract_module.generated_files(changed).items()
        if now != new
    }
    assert {
        "README.md",
        "entrypoint.py",
        "main.yml",
        "values.yaml",
        "kubernetes.md",
        "docker.md",
    } <= stale


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: r["images"]["sftp"]["settings"][0].update(defualt="x"),
            "unknown key(s) defualt",
        ),
        (lambda r: r["images"]["sftp"]["settings"][0].update(type="text"), "SFTP_USERNAME).type"),
        (
            lambda r: r["images"]["mlflow"]["settings"][0].update(group="misc"),
            "MLFLOW_DB_HOST).group",
        ),
        (lambda r: r["profile"]["uid"].update(value=0), "profile.uid: default 0 is below min 1"),
        (lambda r: r["profile"].update(extra={"value": 1}), "profile.extra: missing key(s)"),
        (
            lambda r: r["images"]["sftp"]["settings"][-1].update(default="LOUD"),
            "SFTP_LOG_LEVEL): default 'LOUD' is not one of values",
        ),
        (
            lambda r: r["images"]["sftp"]["settings"].append(r["images"]["sftp"]["settings"][0]),
            "settings listed twice: SFTP_USERNAME",
        ),
        (
            lambda r: r["images"]["sftp"]["settings"].pop(1),
            "images.sftp: needs a setting SFTP_PORT, the listen port",
        ),
        (
            lambda r: r["profile"]["sftp_host_key_types"].update(value=["ed25519"]),
            "default items ['ed25519'] are not among ['ecdsa', 'rsa']",
        ),
        (
            lambda r: r["images"]["sftp"]["settings"][0].update(default="Root"),
            "SFTP_USERNAME): default 'Root' does not match pattern ^[a-z_]",
        ),
        (
            lambda r: r["images"]["sftp"]["settings"][0].update(pattern="[a-z]+"),
            "pattern '[a-z]+' must be a string from ^ to $",
        ),
        (
            lambda r: r["images"]["sftp"]["settings"][0].update(pattern="^\\w+$"),
            "must not hold quotes or backslashes",
        ),
        (
            lambda r: r["images"]["sftp"]["settings"][1].update(pattern="^[0-9]+$"),
            "SFTP_PORT): pattern is for string and size settings",
        ),
    ],
)
def test_a_bad_contract_names_the_key(edit: Any, message: str) -> None:
    raw = copy.deepcopy(RAW)
    edit(raw)
    with pytest.raises(ContractError, match=re.escape(message)):
        parse_contract(raw)


def test_yaml_values_are_set_in_place_and_keep_comments() -> None:
    text = "a:\n  # -- note\n  b: 1  # why\n  c: {d: 2Gi, e: x}\nb: 3\n"
    assert (
        set_yaml_value(text, "a.b", 5, "t")
        == "a:\n  # -- note\n  b: 5  # why\n  c: {d: 2Gi, e: x}\nb: 3\n"
    )
    assert set_yaml_value(text, "a.c.d", "1Gi", "t").endswith("c: {d: 1Gi, e: x}\nb: 3\n")
    assert set_yaml_value(text, "b", 3, "t") == text
    with pytest.raises(ContractError, match=r"no key a\.x"):
        set_yaml_value(text, "a.x", 1, "t")


# ---------- the images read exactly the contract ----------


def mlflow_entrypoint_reads() -> set[str]:
    """Names the MLflow entrypoint reads from its environment (from its syntax tree)."""
    tree = ast.parse((IMAGES / "mlflow" / "entrypoint.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        for arg in node.args[:2]:
            if (
                called in ENV_READERS
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and re.fullmatch(r"MLFLOW_[A-Z0-9_]+", arg.value)
            ):
                names.add(arg.value)
    return names


def shell_entrypoint(image: str) -> str:
    return (IMAGES / image / "entrypoint.sh").read_text()


def test_the_mlflow_entrypoint_reads_exactly_the_contract() -> None:
    found = mlflow_entrypoint_reads()
    contract = {s.name for s in CONTRACT.images["mlflow"].settings}
    assert len(found) > 20, f"the syntax-tree walk found only {found}"
    assert found - contract == set(), "read by the entrypoint, missing from images/contract.yaml"
    assert contract - found == set(), "in images/contract.yaml, never read by the entrypoint"


@pytest.mark.parametrize(("image", "prefix"), [("postgresql", "POSTGRESQL_"), ("sftp", "SFTP_")])
def test_the_shell_entrypoints_read_exactly_the_contract(image: str, prefix: str) -> None:
    found = set(re.findall(rf"\b{prefix}[A-Z_]+\b", shell_entrypoint(image))) - NOT_SETTINGS
    contract = {s.name for s in CONTRACT.images[image].settings}
    assert found - contract == set(), "read by the entrypoint, missing from images/contract.yaml"
    assert contract - found == set(), "in images/contract.yaml, never read by the entrypoint"


def generated_block(path: Path) -> str:
    text = path.read_text()
    return text.split("# generated by make generate: contract\n")[1].split("# end generated")[0]


@pytest.mark.parametrize("image", ["postgresql", "sftp"])
def test_the_shell_defaults_apply_as_the_contract_says(image: str) -> None:
    """Run the generated defaults: an unset or empty variable takes the contract default,
    except where an empty value means something (keep_empty)."""
    settings = [s for s in CONTRACT.images[image].settings if s.default is not None]
    assert len(settings) >= 4
    script = f"source {IMAGES / 'common' / 'lib.sh'}\n"
    script += generated_block(IMAGES / image / "entrypoint.sh")
    script += "".join(f'printf "%s\\n" "${s.name}"\n' for s in settings)
    for given in (None, ""):
        # An empty value a pattern would refuse is left unset (the pattern test covers those).
        env = {} if given is None else {s.name: given for s in settings if not s.pattern}
        out = subprocess.run(
            ["bash", "-euc", script], env=env, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        for setting, value in zip(settings, out, strict=True):
            keeps = given == "" and setting.keep_empty
            assert value == ("" if keeps else str(setting.default)), (setting.name, given)


@pytest.mark.parametrize(
    "setting",
    [s for image in ("postgresql", "sftp") for s in CONTRACT.images[image].settings if s.pattern],
    ids=lambda s: s.name,
)
def test_the_shell_entrypoints_refuse_what_the_pattern_refuses(setting: Any) -> None:
    """The generated check, run with the images' own helpers: the default passes, a value
    outside the pattern stops the entrypoint with exit code 78, naming the variable."""
    image = "postgresql" if setting.name.startswith("POSTGRESQL_") else "sftp"
    script = f"source {IMAGES / 'common' / 'lib.sh'}\n"
    script += generated_block(IMAGES / image / "entrypoint.sh") + "echo passed\n"
    run = functools.partial(
        subprocess.run, ["bash", "-euc", script], capture_output=True, text=True
    )
    assert run(env={}).stdout == "passed\n"
    bad = "has space; $(id)"
    refused = run(env={setting.name: bad})
    assert refused.returncode == 78
    assert f"error: {setting.name}='{bad}' must match {setting.pattern}" in refused.stderr


def test_a_changed_port_reaches_the_images_files() -> None:
    raw = copy.deepcopy(RAW)
    next(s for s in raw["images"]["mlflow"]["settings"] if s["name"] == "MLFLOW_PORT")[
        "default"
    ] = 5001
    files = contract_module.generated_files(parse_contract(raw))
    healthcheck = files[IMAGES / "mlflow" / "healthcheck.py"][1]
    assert "DEFAULT_PORT = 5001\n" in healthcheck
    assert "EXPOSE 5001/tcp\n" in files[IMAGES / "mlflow" / "Dockerfile"][1]
    assert files[IMAGES / "sftp" / "Dockerfile"][0] == files[IMAGES / "sftp" / "Dockerfile"][1]


def test_the_mlflow_entrypoint_enforces_the_contract_ranges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ep_contract", IMAGES / "mlflow" / "entrypoint.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    for setting in CONTRACT.images["mlflow"].settings:
        if setting.type == "int":
            assert module._int({}, setting.name) == setting.default
            assert module._int({setting.name: str(setting.max)}, setting.name) == setting.max
            for bad in (setting.min - 1, setting.max + 1):
                with pytest.raises(
                    module.ConfigError, match=f"between {setting.min} and {setting.max}"
                ):
                    module._int({setting.name: str(bad)}, setting.name)
        elif setting.type == "bool":
            assert module._truthy({}, setting.name) is setting.default
        elif setting.type == "enum":
            assert setting.values == module.CHOICES[setting.name]
    # The entrypoint checks each enum against these (not against a copy of its own).
    assert module.CHOICES["MLFLOW_AUTH_DEFAULT_PERMISSION"] == module.AUTH_PERMISSIONS
    assert module.CHOICES["MLFLOW_DB_SSLMODE"] == module.SSLMODES


# ---------- the Docker role ----------

DOCKER_ROLE = REPO_ROOT / "ansible" / "roles" / "mlops_docker"


def test_docker_role_defaults_are_the_contracts() -> None:
    defaults = yaml.safe_load((DOCKER_ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((DOCKER_ROLE / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    checked = 0
    for knob in CONTRACT.knobs():
        if knob.docker:
            assert defaults[knob.docker] == CONTRACT.target_default(knob, "docker"), knob.docker
            if knob.values:
                assert options[knob.docker]["choices"] == list(knob.values), knob.docker
            checked += 1
    assert checked >= 10


def run_docker_validation(
    tmp_path: Path, settings: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: mlops_docker\n"
        "        tasks_from: validate.yml\n"
    )
    # The play lives in tmp_path: the role finds images/versions.env from the repository root.
    extra = {
        "mlops_env": "unit",
        "ansible_python_interpreter": sys.executable,
        "mlops_docker_repo_root": str(REPO_ROOT),
        **settings,
    }
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(play), "-e", json.dumps(extra)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "ansible" / "roles"),
             "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"},
    )  # fmt: skip


@pytest.mark.parametrize("ttl", [-1, 86401])
def test_docker_role_refuses_a_ttl_outside_the_contract(tmp_path: Path, ttl: int) -> None:
    result = run_docker_validation(tmp_path, {"mlops_docker_auth_cache_ttl_seconds": ttl})
    assert result.returncode != 0
    assert (
        f"mlops_docker_auth_cache_ttl_seconds={ttl} is outside the range 0..86400 "
        "(MLFLOW_AUTH_CACHE_TTL_SECONDS in images/contract.yaml); set "
        "mlops_docker_auth_cache_ttl_seconds to a whole number from 0 to 86400"
    ) in result.stdout
    # The range check comes before the first task that looks at the host.
    assert "Gather the facts" not in result.stdout


def test_docker_role_range_check_passes_the_defaults(tmp_path: Path) -> None:
    result = run_docker_validation(tmp_path, {"mlops_docker_auth_cache_ttl_seconds": 86400})
    assert "Check the ranges of the settings" in result.stdout
    assert "is outside the range" not in result.stdout


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"mlops_docker_sftp_max_startups": "lots"},
            "mlops_docker_sftp_max_startups=lots does not match ^[0-9]+(:[0-9]+:[0-9]+)?$ "
            "(SFTP_MAX_STARTUPS in images/contract.yaml)",
        ),
        (
            {"mlops_docker_sftp_username": "Bad User"},
            "mlops_docker_sftp_username=Bad User does not match",
        ),
        (
            {"mlops_docker_postgresql_shared_buffers": "1 GB"},
            "mlops_docker_postgresql_shared_buffers=1 GB does not match",
        ),
        (
            {"mlops_docker_sftp_host_key_types": []},
            "the SFTP server needs at least one host key type, from ecdsa, rsa",
        ),
        (
            {"mlops_docker_mlflow_cors_allowed_origins": ["https://a,https://b"]},
            "list each origin as its own item",
        ),
    ],
)
def test_docker_role_refuses_bad_settings_with_the_fix(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    result = run_docker_validation(tmp_path, settings)
    assert result.returncode != 0
    assert message in " ".join(result.stdout.split()), result.stdout[-2000:]


def test_a_new_mlflow_version_reaches_every_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions.env"
    text = contract_module.VERSIONS_FILE.read_text()
    versions.write_text(re.sub(r"(?m)^MLFLOW_VERSION=.*$", "MLFLOW_VERSION=9.9.9", text))
    monkeypatch.setattr(contract_module, "VERSIONS_FILE", versions)
    changed = {
        str(path.relative_to(REPO_ROOT))
        for path, (now, new) in contract_module.generated_files(CONTRACT).items()
        if now != new and "9.9.9" in new
    }
    assert {
        "charts/mlops-kit/Chart.yaml",
        "charts/mlops-kit/values.yaml",
        "images/mlflow/requirements.in",
        "requirements/dev.in",
        "images/README.md",
        "docs/kubernetes.md",
    } <= changed
    with pytest.raises(ContractError, match=r"requirements\.lock pins mlflow .*9\.9\.9.*make lock"):
        contract_module.check_locked_versions()


def test_the_addresses_in_the_docs_are_the_default_ones() -> None:
    """The README and the Docker guide show where a default deploy listens: the role's
    default bind address and the contract's published ports (a changed default must show)."""
    defaults = yaml.safe_load((REPO_ROOT / DOCKER_DEFAULTS_FILE).read_text())
    bind = defaults["mlops_docker_bind_address"]
    ports = {
        "mlflow": CONTRACT.profile["mlflow_published_port"].default,
        "sftp": CONTRACT.profile["sftp_published_port"].default,
    }
    expected = {f"http://{bind}:{ports['mlflow']}", f"{bind}:{ports['sftp']}"}
    for doc in ("README.md", "docs/docker.md"):
        text = (REPO_ROOT / doc).read_text()
        shown = set(re.findall(r"(?:http://)?127\.0\.0\.1:[0-9]+", text))
        assert expected <= shown, f"{doc} does not show {expected - shown}"
        assert {s.rsplit(":", 1)[1] for s in shown} <= {str(p) for p in ports.values()}, doc
