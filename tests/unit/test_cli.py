"""The mlopskit command line (scripts/mlopskit/__main__.py): groups, routing, and every caller."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
from mlopskit import __main__ as cli
from mlopskit import docker_cli
from mlopskit.cluster import cli as cluster_cli
from mlopskit.shell import CommandError

REPO_ROOT = Path(__file__).resolve().parents[2]

# Each grouped command, the module attribute it must reach, and what that function must see.
ROUTES = [
    (["image", "build", "sftp"], cli, "_image_build", {"names": ["sftp"]}),
    (
        ["image", "build", "postgresql", "--postgresql-major", "17"],
        cli,
        "_image_build",
        {"names": ["postgresql"], "postgresql_major": "17"},
    ),
    (["image", "refs"], cli, "_image_refs", {}),
    (["stack", "check", "e"], docker_cli, "_env_check", {"env": "e"}),
    (["stack", "info", "e"], docker_cli, "_info", {"env": "e"}),
    (["stack", "confirm-purge", "e"], docker_cli, "_confirm_purge", {"env": "e"}),
    (["stack", "backup", "e", "--keep", "3"], docker_cli, "_backup", {"env": "e", "keep": "3"}),
    (["stack", "restore", "e", "/b/1"], docker_cli, "_restore", {"env": "e", "source": "/b/1"}),
    (["stack", "pre-upgrade", "e"], docker_cli, "_pre_upgrade", {"env": "e"}),
    (
        ["stack", "rollback-advice", "e", "/b"],
        docker_cli,
        "_rollback_advice",
        {"env": "e", "backups": "/b"},
    ),
    (["stack", "upgrade-postgresql", "e"], docker_cli, "_upgrade_postgresql", {"env": "e"}),
    (
        ["people", "add", "e", "ana", "--role", "reader", "--dvc", "read"],
        docker_cli,
        "_add_user",
        {"env": "e", "name": "ana", "role": "reader", "dvc": "read", "pubkey": ""},
    ),
    (["people", "remove", "e", "ana"], docker_cli, "_remove_user", {"env": "e", "name": "ana"}),
    (
        ["people", "rotate", "e", "ana", "--pubkey", "k.pub"],
        docker_cli,
        "_rotate_user",
        {"env": "e", "name": "ana", "pubkey": "k.pub"},
    ),
    (["contract", "generate", "--check"], cli, "_contract_generate", {"check": True}),
    (["cluster", "build"], cluster_cli, "_build", {}),
    (["host", "engine"], cli, "_host_engine", {}),
    (["host", "chromium"], cli, "_host_chromium", {}),
    (["host", "helm"], cli, "_host_tool", {"tool": "helm"}),
    (["host", "kubectl"], cli, "_host_tool", {"tool": "kubectl"}),
    (["host", "tools-dir"], cli, "_host_tool", {"tool": "tools-dir"}),
    (["deps", "lock", "dev"], cli, "_deps_lock", {"which": ["dev"]}),
    (["deps", "lock"], cli, "_deps_lock", {"which": []}),
]


@pytest.mark.parametrize(
    ("argv", "module", "name", "expected"), ROUTES, ids=[" ".join(r[0]) for r in ROUTES]
)
def test_each_command_reaches_its_function(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    module: object,
    name: str,
    expected: dict[str, object],
) -> None:
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(module, name, seen.append)
    assert cli.main(argv) == 0
    assert len(seen) == 1
    assert {key: getattr(seen[0], key) for key in expected} == expected


@pytest.mark.parametrize(
    ("argv", "function", "call"),
    [
        (["cluster", "up"], "up", ("kubernetes", False)),
        (["cluster", "up", "--profile", "openshift", "--switch"], "up", ("openshift", True)),
        (["cluster", "down"], "down", ()),
        (["cluster", "status"], "status", ()),
    ],
)
def test_the_cluster_group_runs_the_cluster_module(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], function: str, call: tuple[object, ...]
) -> None:
    calls: list[tuple[object, ...]] = []

    def record(*args: object, **kwargs: object) -> None:
        calls.append((*args, *kwargs.values()))

    monkeypatch.setattr(cluster_cli, function, record)
    assert cli.main(argv) == 0
    assert calls == [call]


def test_an_unknown_lock_is_a_command_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlopskit import lock

    monkeypatch.setattr(lock, "lock_all", pytest.fail)
    assert cli.main(["deps", "lock", "dev", "prod"]) == 1
    assert "unknown lock(s) ['prod']" in capsys.readouterr().err


def test_a_command_error_is_one_line_on_stderr_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(_args: argparse.Namespace) -> None:
        raise CommandError("deploy/x/ does not exist")

    monkeypatch.setattr(docker_cli, "_env_check", fail)
    assert cli.main(["stack", "check", "x"]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: deploy/x/ does not exist\n")


@pytest.mark.parametrize(
    "argv", [["nope"], [], ["stack"], ["stack", "nope", "e"], ["images"], ["add-user", "e", "a"]]
)
def test_an_unknown_or_missing_group_or_command_exits_2_with_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: mlopskit")


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_the_help_lists_every_group_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_of([], capsys).split())
    assert [name for name, _, _ in cli.GROUPS] == [
        "image", "stack", "people", "contract", "cluster", "host", "deps"
    ]  # fmt: skip
    for name, line, _ in cli.GROUPS:
        assert f"{name} {line}" in text


def test_each_group_s_help_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    commands: dict[str, set[str]] = {}
    for argv, *_ in ROUTES:
        commands.setdefault(argv[0], set()).add(argv[1])
    commands["cluster"] |= {"up", "down", "status"}
    assert set(commands) == {name for name, _, _ in cli.GROUPS}
    for group, names in commands.items():
        listed = re.findall(r"^    (\S+)", help_of([group], capsys), flags=re.M)
        assert set(listed) == names, group


# Callers: every `mlopskit …` and `python -m mlopskit …` written in the files that run or document
# the tooling must parse with today's parser (a renamed or removed command fails here).
CALLER_FILES = [
    "Makefile",
    *(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "mk").glob("*.mk"))),
    *(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "ansible").rglob("*.yml"))),
    ".ci/run",
    *(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "bench").glob("*.py"))),
    *(str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "docs").glob("*.md"))),
    "README.md",
]
# A word invoking the command: `-m mlopskit[.module]` (shell, Make) or `mlopskit` starting a
# command (a Make recipe, a shell line, Markdown code); its arguments run to the end of that
# command. A dotted name not after -m (mlopskit.stack.load_stack) is Python, not a command; a
# bare `mlopskit` names the command, and `mlopskit GROUP …` is the documented pattern.
SHELL_CALL = re.compile(
    r"(?P<m>-m )?(?<![\w/.-])mlopskit(?P<module>\.[\w.]+)?(?P<args>(?: [^\s`;|&>)\]]+)*)"
)
# Ansible argv lists: [python, -m, mlopskit, image, refs] or ['-m', 'mlopskit', 'image', ...].
LIST_CALL = re.compile(r"""-m['"]?,\s*['"]?mlopskit(?P<module>\.[\w.]+)?['"]?(?P<args>[^\]]*)\]""")


MAKE_DEFAULTS = dict(
    re.findall(
        r"^([A-Z]+) \?= (\S+)$",
        "\n".join(
            (REPO_ROOT / name).read_text()
            for name in CALLER_FILES
            if name == "Makefile" or name.endswith(".mk")
        ),
        flags=re.M,
    )
)


def make_to_shell(text: str) -> str:
    """Expand the Makefiles' variables (to their defaults, else VALUE) to read their commands."""
    text = text.replace("$(MLOPSKIT)", "mlopskit").replace("$(PY) -m mlopskit", "mlopskit")
    text = re.sub(r"\$\(([A-Z_]+)\)", lambda m: MAKE_DEFAULTS.get(m[1], "VALUE"), text)
    return re.sub(r"\$\(if [^,()]*,([^()]*)\)", r"\1", text)


def caller_invocations() -> list[tuple[str, list[str] | None]]:
    """(where, argv) for each invocation; argv None for a module's own command line."""
    found: list[tuple[str, list[str] | None]] = []
    for name in CALLER_FILES:
        text = make_to_shell((REPO_ROOT / name).read_text())
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{name}:{number}"
            for match in LIST_CALL.finditer(line):
                items = [item.strip().strip("'\"") for item in match["args"].split(",")]
                argv = None if match["module"] else [i for i in items if i]
                found.append((where, argv))
            for match in SHELL_CALL.finditer(LIST_CALL.sub("", line)):
                if match["module"] and not match["m"]:
                    continue
                if not match["module"] and match["args"].split()[:1] in ([], ["GROUP"]):
                    continue
                argv = None if match["module"] else shlex.split(match["args"])
                found.append((where, argv))
    return found


def test_the_callers_are_found() -> None:
    places = {where.split(":")[0] for where, _ in caller_invocations()}
    assert {
        "Makefile",
        "mk/deploy.mk",
        "mk/ops.mk",
        "mk/cluster.mk",
        "mk/chart.mk",
        "ansible/roles/mlops_docker/tasks/images.yml",
        "ansible/roles/mlops_kubernetes/tasks/tools.yml",
        "README.md",
    } <= places


@pytest.mark.parametrize(("where", "argv"), caller_invocations(), ids=lambda value: str(value))
def test_every_caller_s_command_parses(where: str, argv: list[str] | None) -> None:
    assert argv is not None, f"{where}: call `mlopskit GROUP COMMAND`, not a module's own CLI"
    assert exit_code(argv) == 0, f"{where}: `mlopskit {shlex.join(argv)}` does not parse"


def exit_code(argv: list[str]) -> object:
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit as exited:
        return exited.code
    return 0
