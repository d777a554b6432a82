"""deploy/<env>/people.yml editing behind make add-user / remove-user / rotate-user."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from mlopskit import environments
from mlopskit.environments import Environment
from mlopskit.people import (
    Person,
    add_person,
    people_file,
    read_people,
    read_public_key,
    remove_person,
    rotate_person,
)
from mlopskit.shell import CommandError


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Environment:
    monkeypatch.setattr(environments, "DEPLOY_ROOT", tmp_path / "deploy")
    monkeypatch.setattr(environments, "BUILD_ROOT", tmp_path / "build")
    environment = Environment("x")
    environment.deploy_dir.mkdir(parents=True)
    return environment


def test_add_writes_a_list_the_playbook_reads(env: Environment) -> None:
    add_person(env, Person("alice", "editor", "write"))
    add_person(env, Person("bob", "reader", "read"))
    document = yaml.safe_load(people_file(env).read_text())
    assert document == {
        "mlops_people": [
            {"name": "alice", "mlflow": "editor", "dvc": "write"},
            {"name": "bob", "mlflow": "reader", "dvc": "read"},
        ]
    }
    assert people_file(env).read_text().startswith("# People of this environment")


def test_adding_someone_again_updates_them_and_keeps_their_key(env: Environment) -> None:
    add_person(env, Person("alice", "editor", "write", "ssh-ed25519 AAAAkey alice"))
    message = add_person(env, Person("alice", "reader", "read"))
    assert message.startswith("updated alice")
    assert read_people(people_file(env)) == [
        Person("alice", "reader", "read", "ssh-ed25519 AAAAkey alice")
    ]


@pytest.mark.parametrize(
    ("person", "message"),
    [
        (Person("Alice"), "NAME='Alice'"),
        (Person(""), "NAME=''"),
        (Person("admin"), "reserved"),
        (Person("metrics"), "reserved"),
        (Person("alice", mlflow="owner"), "ROLE='owner'"),
        (Person("alice", dvc="all"), "DVC='all'"),
    ],
)
def test_bad_people_are_refused_and_nothing_is_written(
    env: Environment, person: Person, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        add_person(env, person)
    assert not people_file(env).exists()


def test_remove_takes_the_person_out(env: Environment) -> None:
    add_person(env, Person("alice"))
    add_person(env, Person("bob"))
    remove_person(env, "alice")
    assert [p.name for p in read_people(people_file(env))] == ["bob"]
    with pytest.raises(CommandError, match=r"NAME=alice is not in .*listed: bob"):
        remove_person(env, "alice")


def test_rotate_drops_only_the_generated_secrets(env: Environment) -> None:
    add_person(env, Person("alice"))
    folder = env.build_dir / "people" / "alice"
    folder.mkdir(parents=True)
    for name in ("mlflow_password", "id_rsa", "id_rsa.pub", "connection.env"):
        (folder / name).write_text("x")
    rotate_person(env, "alice")
    assert sorted(p.name for p in folder.iterdir()) == ["connection.env"]
    with pytest.raises(CommandError, match="add them with make add-user"):
        rotate_person(env, "zoe")


def test_public_keys_are_checked(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert read_public_key(f"{key}.pub").startswith("ssh-ed25519 ")
    with pytest.raises(CommandError, match="is a private key"):
        read_public_key(str(key))
    with pytest.raises(CommandError, match="is not a file"):
        read_public_key(str(tmp_path / "missing.pub"))
    (tmp_path / "junk.pub").write_text("not a key\n")
    with pytest.raises(CommandError, match="exactly one OpenSSH public key"):
        read_public_key(str(tmp_path / "junk.pub"))
