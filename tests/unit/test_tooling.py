"""Pure logic of the build tooling: mirrors, versions, extra CA staging."""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import pytest
from mlopskit.base_image import host_debian_mirror
from mlopskit.build import stage_extra_ca
from mlopskit.lock import mlflow_lock, requirements_for
from mlopskit.shell import CommandError, taking_turns
from mlopskit.versions import REPO_ROOT, VersionError, image_set, read_env_file


def test_mirror_from_deb822_sources_skips_security(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "a-security.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    (sources / "debian.sources").write_text(
        "Types: deb\n# URIs: http://commented.example\nURIs: http://mirror.example/debian\n"
    )
    assert host_debian_mirror((sources, tmp_path / "none")) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_list(tmp_path: Path) -> None:
    listing = tmp_path / "sources.list"
    listing.write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://local.mirror/debian bookworm main\n"
    )
    assert host_debian_mirror((tmp_path / "none", listing)) == "http://local.mirror/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no Debian mirror found"):
        host_debian_mirror((tmp_path / "none",))


def test_extra_ca_staging_copies_only_certificates(tmp_path: Path) -> None:
    source = tmp_path / "ca"
    (source / "nested").mkdir(parents=True)
    (source / "corp.crt").write_text("A")
    (source / "nested" / "proxy.crt").write_text("B")
    (source / "README").write_text("not a cert")
    target = tmp_path / "ctx" / ".build-ca"
    target.mkdir(parents=True)
    (target / "stale.crt").write_text("old")
    assert stage_extra_ca(source, target) == 2
    assert sorted(p.name for p in target.iterdir()) == ["corp.crt", "proxy.crt"]
    assert stage_extra_ca(tmp_path / "missing", target) == 0
    assert list(target.iterdir()) == []


def pinned(path: Path, package: str) -> str:
    match = re.search(rf"^{re.escape(package)}(?:\[[^\]]*\])?==(\S+)", path.read_text(), re.M)
    assert match, f"{package} is not pinned in {path}"
    return match.group(1)


def test_mlflow_version_is_the_same_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_PREFIX", raising=False)
    version = read_env_file(REPO_ROOT / "images" / "versions.env")["MLFLOW_VERSION"]
    assert pinned(REPO_ROOT / "images" / "mlflow" / "requirements.in", "mlflow") == version
    assert pinned(REPO_ROOT / "images" / "mlflow" / "requirements.lock", "mlflow") == version
    assert pinned(REPO_ROOT / "requirements" / "dev.in", "mlflow") == version
    assert pinned(REPO_ROOT / "requirements" / "dev.lock", "mlflow") == version
    assert image_set().ref("mlflow") == f"mlops-kit/mlflow:{version}"


@pytest.mark.parametrize("lock", ["images/mlflow/requirements.lock", "requirements/dev.lock"])
def test_lock_files_pin_every_package_and_paramiko_below_4(lock: str) -> None:
    lines = [
        line
        for line in (REPO_ROOT / lock).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    assert int(pinned(REPO_ROOT / lock, "paramiko").split(".")[0]) < 4


def test_the_environment_s_image_prefix_wins_over_versions_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMAGE_PREFIX", "mine")
    assert image_set().ref("postgresql").startswith("mine/postgresql:")
    assert image_set("explicit").ref("sftp").startswith("explicit/sftp:")


def test_our_apt_calls_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The background cluster build and the engine install must not run apt-get at once."""
    import threading
    import time

    from mlopskit import engine

    monkeypatch.setattr(engine, "APT_TURNS", tmp_path / "apt.lock")
    running: list[tuple[str, ...]] = []
    overlapped: list[tuple[str, ...]] = []

    def fake_run(args: list[str], **_: object) -> None:
        running.append(tuple(args))
        if len(running) > 1:
            overlapped.append(tuple(args))
        time.sleep(0.05)
        running.pop()

    monkeypatch.setattr(engine, "run", fake_run)
    calls = [threading.Thread(target=engine.apt_get, args=("update",)) for _ in range(4)]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    assert overlapped == []


def test_a_lock_keeps_packaging_tools_only_when_its_in_file_names_them() -> None:
    from mlopskit.lock import pinned_lines

    frozen = "mlflow==3.0\npip==23.2.1\nsetuptools==84.2.1\nwheel==0.45.1\n"
    assert pinned_lines(frozen, "mlflow==3.0\n# setuptools\n") == "mlflow==3.0\n"
    assert pinned_lines(frozen, "mlflow==3.0\nSetuptools>=78.1.1\n") == (
        "mlflow==3.0\nsetuptools==84.2.1\n"
    )


def test_a_new_lock_keeps_the_pins_of_packages_the_in_file_does_not_name() -> None:
    """Adding boto3 must not move kubernetes; a bound named in the .in file may move its pin."""
    from mlopskit.lock import kept_pins

    lock = "# Generated\nkubernetes==37.0.2\npython-dateutil==4.0.0\nsix==1.17.0\n"
    source = (
        "boto3\n# botocore needs < 3\npython-dateutil<3\nKubernetes[adal]<37 ; python_version>'3'\n"
    )
    assert kept_pins(lock, source) == "six==1.17.0\n"
    assert kept_pins(lock, "boto3\n") == "kubernetes==37.0.2\npython-dateutil==4.0.0\nsix==1.17.0\n"


def test_the_lock_command_passes_upgrade_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlopskit import __main__ as cli
    from mlopskit import lock

    calls: list[tuple[list[str], bool]] = []
    monkeypatch.setattr(lock, "lock_all", lambda which, upgrade: calls.append((which, upgrade)))
    assert cli.main(["deps", "lock", "dev"]) == 0
    assert cli.main(["deps", "lock", "--upgrade"]) == 0
    assert calls == [(["dev"], False), (list(lock.LOCKS), True)]


def test_the_dev_lock_pins_a_setuptools_that_builds_the_project() -> None:
    """`make venv` installs the project with --no-build-isolation: on the lock's setuptools."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["mlopskit"] == "mlopskit.__main__:main"
    (requirement,) = project["build-system"]["requires"]
    name, minimum = requirement.split(">=")
    locked = pinned(REPO_ROOT / "requirements" / "dev.lock", name)
    as_tuple = lambda version: tuple(int(part) for part in version.split("."))  # noqa: E731
    assert as_tuple(locked) >= as_tuple(minimum)


def test_mlflow_version_override_names_the_tag_only(monkeypatch: pytest.MonkeyPatch) -> None:
    pin = read_env_file(REPO_ROOT / "images" / "versions.env")["MLFLOW_VERSION"]
    monkeypatch.setenv("MLFLOW_VERSION", "3.16.1")
    assert image_set("p").ref("mlflow") == "p/mlflow:3.16.1"
    assert image_set("p", mlflow_version="").ref("mlflow") == f"p/mlflow:{pin}"
    assert image_set("p", mlflow_version="2.22.5").tag("mlflow") == "2.22.5"
    monkeypatch.setenv("MLFLOW_VERSION", "latest")
    with pytest.raises(VersionError, match="must be a release"):
        image_set()


def test_another_mlflow_lock_comes_from_the_cache_by_version_and_inputs(tmp_path: Path) -> None:
    text = requirements_for("3.16.1", REPO_ROOT / "images" / "mlflow" / "requirements.in")
    assert "mlflow[auth]==3.16.1\n" in text
    assert text.count("mlflow[auth]==") == 1
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    cached = tmp_path / f"mlflow-3.16.1-{key}.lock"
    cached.write_text("mlflow==3.16.1\n")
    assert mlflow_lock("3.16.1", cache=tmp_path) == cached


def test_a_second_holder_waits_for_its_turn_and_says_for_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Image builds, apt calls and the cluster build take turns with this one helper."""
    lock_file = tmp_path / "build" / "turns.lock"
    second_started = threading.Event()

    def second_holder() -> None:
        with taking_turns(lock_file, "the first holder"):
            second_started.set()

    with taking_turns(lock_file, "nobody"):
        waiting = threading.Thread(target=second_holder)
        waiting.start()
        assert not second_started.wait(0.5), "the second holder ran during the first"
    assert second_started.wait(10), "the second holder never got its turn"
    waiting.join()
    assert f"waiting for the first holder (lock: {lock_file})" in capsys.readouterr().err
