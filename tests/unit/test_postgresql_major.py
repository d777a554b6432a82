"""PostgreSQL majors: which Debian release builds each, which major an environment targets,
and the refusal of a downgrade (scripts/mlopskit/versions.py, build.py, pgmajor.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlopskit import backup, build, pgmajor
from mlopskit.environments import Environment
from mlopskit.versions import REPO_ROOT, VersionError, image_set, parse_suites, read_env_file

VERSIONS = read_env_file(REPO_ROOT / "images" / "versions.env")


def test_the_pinned_major_has_a_debian_release_and_mlflow_sftp_stay_on_bookworm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POSTGRESQL_MAJOR", raising=False)
    images = image_set("p")
    assert (
        images.debian_suite("postgresql")
        == dict(images.postgresql_suites)[VERSIONS["POSTGRESQL_MAJOR"]]
    )
    assert images.debian_suite("mlflow") == images.debian_suite("sftp") == "bookworm"
    assert dict(images.postgresql_suites)["15"] == "bookworm"
    assert dict(images.postgresql_suites)["17"] == "trixie"


def test_postgresql_major_override_names_the_tag_and_the_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTGRESQL_MAJOR", "17")
    images = image_set("p")
    assert images.ref("postgresql") == "p/postgresql:17"
    assert images.build_args("postgresql") == {"POSTGRESQL_MAJOR": "17"}
    assert images.debian_suite("postgresql") == "trixie"
    pinned = image_set("p", postgresql_major="")
    assert pinned.tag("postgresql") == VERSIONS["POSTGRESQL_MAJOR"]
    monkeypatch.setenv("POSTGRESQL_MAJOR", "latest")
    with pytest.raises(VersionError, match="must be a PostgreSQL major version like 17"):
        image_set()


def test_a_major_no_release_ships_is_refused_before_any_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build, "ensure_engine", lambda: pytest.fail("built anyway"))
    with pytest.raises(VersionError, match=r"PostgreSQL 16 comes from no Debian release.*17 \("):
        build.build_all(("postgresql",), postgresql_major="16")


def test_suites_are_major_colon_suite() -> None:
    assert parse_suites("15:bookworm 17:trixie") == (("15", "bookworm"), ("17", "trixie"))
    with pytest.raises(VersionError, match="is not MAJOR:SUITE"):
        parse_suites("15=bookworm")


def test_each_suite_has_its_own_base_and_base_image_overrides_bookworm_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(
        build, "ensure_base_image", lambda ref, suite: asked.append((ref, suite)) or ref
    )
    monkeypatch.setenv("BASE_IMAGE", "mine/bookworm:1")
    bases: dict[str, str] = {}
    assert build.base_for("bookworm", bases) == "mine/bookworm:1"
    assert build.base_for("trixie", bases) == "debian:trixie-slim"
    assert build.base_for("trixie", bases) == "debian:trixie-slim"
    assert asked == [("mine/bookworm:1", "bookworm"), ("debian:trixie-slim", "trixie")]


def write_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Environment:
    env = Environment("x")
    deploy = tmp_path / "x"
    deploy.mkdir()
    (deploy / "settings.yml").write_text(text)
    monkeypatch.setattr(Environment, "deploy_dir", property(lambda self: deploy))
    return env


def test_the_target_major_comes_from_the_setting_then_the_environment_then_versions_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = write_settings(tmp_path, monkeypatch, "mlops_target: docker\n")
    monkeypatch.delenv("POSTGRESQL_MAJOR", raising=False)
    assert pgmajor.target_major(env) == (
        VERSIONS["POSTGRESQL_MAJOR"],
        "images/versions.env POSTGRESQL_MAJOR",
    )
    monkeypatch.setenv("POSTGRESQL_MAJOR", "17")
    assert pgmajor.target_major(env) == ("17", "POSTGRESQL_MAJOR")
    (env.deploy_dir / "settings.yml").write_text("mlops_docker_postgresql_major: '16'\n")
    assert pgmajor.target_major(env)[0] == "16"
    (env.deploy_dir / "settings.yml").write_text("mlops_docker_postgresql_major: x\n")
    with pytest.raises(VersionError, match="mlops_docker_postgresql_major='x'"):
        pgmajor.target_major(env)


def test_a_downgrade_is_refused_with_what_to_do() -> None:
    plan = pgmajor.Plan(Environment("prod"), "17", "15", "POSTGRESQL_MAJOR")
    assert plan.moves
    with pytest.raises(pgmajor.DowngradeError) as refused:
        pgmajor.check_direction(plan)
    message = str(refused.value)
    assert "prod holds PostgreSQL 17 data and POSTGRESQL_MAJOR asks for PostgreSQL 15" in message
    assert "downgrade" in message
    assert "Nothing was changed" in message
    assert "Set it back to 17" in message
    pgmajor.check_direction(pgmajor.Plan(Environment("prod"), "15", "17", "POSTGRESQL_MAJOR"))
    assert not pgmajor.Plan(Environment("prod"), "17", "17", "x").moves
    # Numbers, not strings: 9 < 10.
    with pytest.raises(pgmajor.DowngradeError):
        pgmajor.check_direction(pgmajor.Plan(Environment("prod"), "10", "9", "x"))


def test_pre_upgrade_backs_up_at_once_only_within_one_major(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = write_settings(tmp_path, monkeypatch, "mlops_target: docker\n")
    monkeypatch.setattr(backup, "check_environment", lambda name: env)
    taken: list[str] = []
    monkeypatch.setattr(backup, "backup", lambda env, label: taken.append(label) or Path("b"))
    monkeypatch.setattr(pgmajor, "pre_upgrade_check", lambda env: False)
    backup.pre_upgrade_command("x")
    assert taken == ["before-upgrade"]
    # Across majors the move takes it later, with MLflow stopped.
    monkeypatch.setattr(pgmajor, "pre_upgrade_check", lambda env: True)
    backup.pre_upgrade_command("x")
    assert taken == ["before-upgrade"]


def test_an_unfinished_move_is_resumed_not_planned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Environment("x")
    monkeypatch.setattr(Environment, "build_dir", property(lambda self: tmp_path))
    (tmp_path / pgmajor.MARKER).write_text("{}")
    monkeypatch.setattr(pgmajor, "plan_for", lambda env: pytest.fail("planned again"))
    assert pgmajor.pre_upgrade_check(env) is True


def test_the_role_checks_the_major_before_any_change_and_stops_after_postgresql_on_request() -> (
    None
):
    import yaml

    tasks = yaml.safe_load(
        (REPO_ROOT / "ansible" / "roles" / "mlops_docker" / "tasks" / "containers.yml").read_text()
    )
    names = [task["name"] for task in tasks]
    refuse = names.index("Refuse to start another PostgreSQL major on the data")
    assert refuse < names.index("Create the private network") < names.index("Start SFTP")
    stop = names.index("Stop after PostgreSQL when a major upgrade is loading the dumps")
    assert tasks[stop]["ansible.builtin.meta"] == "end_host"
    assert names.index("Start PostgreSQL and wait until it is healthy") < stop
    guard = names.index("Refuse to start MLflow while a PostgreSQL major upgrade is unfinished")
    assert stop < guard < names.index("Find the MLflow image's ID")
    assert pgmajor.MARKER in tasks[guard]["ansible.builtin.assert"]["that"]
