"""Pure logic of scripts/mlopskit/environments.py: environment names and folders, connection.env
parsing, masked `make info` output and the purge confirmation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mlopskit import environments
from mlopskit.environments import (
    CONNECTION_KEYS,
    Environment,
    check_environment,
    confirm_purge,
    known_environments,
    mask,
    parse_connection_env,
    read_admin,
    read_connection,
    render_info,
)
from mlopskit.shell import CommandError

CONNECTION = {
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    "MLFLOW_TRACKING_USERNAME": "alice",
    "MLFLOW_TRACKING_PASSWORD": "s3cr3t-Pa55",
    "DVC_REMOTE_URL": "ssh://mlops@127.0.0.1:2222/data/dvc",
    "SFTP_HOST": "127.0.0.1",
    "SFTP_PORT": "2222",
    "SFTP_USERNAME": "mlops",
    "SFTP_PRIVATE_KEY": "/work/build/x/people/alice/id_rsa",
    "SFTP_KNOWN_HOSTS": "/work/build/x/people/alice/known_hosts",
}
ADMIN = {
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": "the-admins-Pa55",
}


@pytest.fixture
def deploy_root(tmp_path: Path) -> Path:
    """deploy/ with a complete env "good", an incomplete "half" and a stray folder."""
    root = tmp_path / "deploy"
    layout = {"good": ("inventory.yml", "settings.yml"), "half": ("settings.yml",)}
    for name, files in layout.items():
        (root / name).mkdir(parents=True)
        for file_name in files:
            (root / name / file_name).write_text("{}\n")
    (root / "notes").mkdir()
    return root


def connection_text(values: dict[str, str]) -> str:
    return "# generated\n" + "".join(f"export {key}='{value}'\n" for key, value in values.items())


# ---------------------------------------------------------------- environments


def test_known_environments_are_folders_with_settings(deploy_root: Path, tmp_path: Path) -> None:
    assert known_environments(deploy_root) == ["good", "half"]
    assert known_environments(tmp_path / "missing") == []


def test_a_complete_environment_is_returned(deploy_root: Path) -> None:
    env = check_environment("good", deploy_root)
    assert env == Environment("good")
    assert env.connection_file("alice") == env.build_dir / "people" / "alice" / "connection.env"
    assert env.admin_file == env.build_dir / "admin.env"
    assert env.build_dir.name == "good"


@pytest.mark.parametrize("name", ["", "Local", "-x", "a_b", "a/b", "../etc", "x" * 32])
def test_invalid_names_are_refused_with_the_rule(deploy_root: Path, name: str) -> None:
    with pytest.raises(CommandError, match="not a valid environment name: use lower-case"):
        check_environment(name, deploy_root)


def test_a_missing_environment_lists_the_known_ones_and_the_fix(deploy_root: Path) -> None:
    with pytest.raises(CommandError) as error:
        check_environment("prod", deploy_root)
    message = str(error.value)
    assert "deploy/prod/ does not exist" in message
    assert "known environments: good, half" in message
    assert "cp -r deploy/local deploy/prod" in message


def test_a_missing_file_is_named(deploy_root: Path) -> None:
    with pytest.raises(CommandError, match=r"deploy/half/inventory\.yml is missing"):
        check_environment("half", deploy_root)


def test_the_repositorys_own_environments_are_complete() -> None:
    for name in ("local", "e2e", "kubernetes-example", "openshift-example"):
        assert check_environment(name).name == name


# ---------------------------------------------------------------- connection.env


def test_parse_connection_env_reads_what_the_targets_write() -> None:
    assert parse_connection_env(connection_text(CONNECTION)) == CONNECTION


def test_parse_connection_env_handles_shell_quoting_and_plain_lines() -> None:
    text = (
        "\n   # a comment\nexport A='it'\"'\"'s quoted'\nB=\"two words\"\nC=plain\nEMPTY=\nD=''\n"
    )
    assert parse_connection_env(text) == {
        "A": "it's quoted",
        "B": "two words",
        "C": "plain",
        "EMPTY": "",
        "D": "",
    }


@pytest.mark.parametrize("line", ["no equals sign", "lower=case", "1ABC=x", "A B=c"])
def test_parse_connection_env_refuses_other_lines(line: str) -> None:
    with pytest.raises(ValueError, match="not a KEY=value line"):
        parse_connection_env(f"export OK=1\n{line}\n")


def test_read_connection_of_someone_unknown_says_how_to_add_them() -> None:
    env = Environment("never-deployed-unit-test")
    assert not env.connection_file("zoe").exists()
    with pytest.raises(CommandError, match="make add-user ENV=never-deployed-unit-test NAME=zoe"):
        read_connection(env, "zoe")


def test_read_admin_without_a_deploy_says_to_deploy() -> None:
    with pytest.raises(CommandError, match="make deploy ENV=never-deployed-unit-test"):
        read_admin(Environment("never-deployed-unit-test"))


def test_read_connection_names_the_missing_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(environments, "BUILD_ROOT", tmp_path)
    env = Environment("x")
    env.connection_file("alice").parent.mkdir(parents=True)
    partial = {k: v for k, v in CONNECTION.items() if k not in {"SFTP_PORT", "DVC_REMOTE_URL"}}
    env.connection_file("alice").write_text(connection_text(partial))
    with pytest.raises(CommandError, match="lacks DVC_REMOTE_URL, SFTP_PORT; run `make deploy"):
        read_connection(env, "alice")
    env.connection_file("alice").write_text(connection_text(CONNECTION))
    assert read_connection(env, "alice") == CONNECTION
    assert env.people_with_connections() == ["alice"]


# ---------------------------------------------------------------- make info


def test_mask_hides_the_value_and_its_length() -> None:
    assert mask("short") == mask("a much longer secret value") == "********"
    assert mask("") == "(empty)"


def test_render_info_masks_every_password_and_shows_the_rest() -> None:
    text = render_info(Environment("x"), ADMIN, {"alice": CONNECTION})
    assert CONNECTION["MLFLOW_TRACKING_PASSWORD"] not in text
    assert ADMIN["MLFLOW_TRACKING_PASSWORD"] not in text
    assert "MLFLOW_TRACKING_PASSWORD" in text
    assert "********" in text
    for key in CONNECTION_KEYS:
        if key != "MLFLOW_TRACKING_PASSWORD":
            assert f"{key} " in text
            assert CONNECTION[key] in text
    assert text.splitlines()[0] == "Environment x: MLflow UI at http://127.0.0.1:5000/"
    assert "platform engineer only" in text.splitlines()[1]
    assert "build/x/people/alice/" in text


def test_render_info_without_people_says_how_to_add_one() -> None:
    text = render_info(Environment("x"), ADMIN, {})
    assert "make add-user ENV=x NAME=" in text


# ---------------------------------------------------------------- make destroy PURGE=1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", ["1", "true", "yes"])
def test_yes_confirms_without_asking(monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    monkeypatch.setenv("YES", answer)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    confirm_purge(Environment("x"))


def test_purge_without_a_terminal_needs_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YES", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match=r"ALL data of environment x.*rerun with YES=1"):
        confirm_purge(Environment("x"))


@pytest.mark.parametrize(("typed", "confirmed"), [("x\n", True), ("  x \n", True), ("y\n", False)])
def test_purge_asks_for_the_environment_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], typed: str, confirmed: bool
) -> None:
    monkeypatch.delenv("YES", raising=False)
    monkeypatch.setattr("sys.stdin", Terminal(typed))
    if confirmed:
        confirm_purge(Environment("x"))
    else:
        with pytest.raises(CommandError, match="not confirmed; nothing was removed"):
            confirm_purge(Environment("x"))
    assert "deletes ALL data of environment x" in capsys.readouterr().err


def test_purge_lists_what_it_deletes_and_where_backups_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("YES", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    deleted = ["Docker volume p-pgdata", "/var/lib/mlops-kit/p/"]
    kept = ["2 backup(s) in /var/backups/mlops-kit/p/ (mlops_docker_backup_dir)"]
    with pytest.raises(CommandError) as caught:
        confirm_purge(Environment("x"), deleted, kept)
    assert (
        "deletes ALL data of environment x: Docker volume p-pgdata; /var/lib/mlops-kit/p/. "
        "It keeps 2 backup(s) in /var/backups/mlops-kit/p/"
    ) in str(caught.value)
