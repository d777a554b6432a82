"""The kit's MLflow roles and people list (images/mlflow/plugins/mlops_kit_auth/roles.py)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "mlflow" / "plugins"))
from mlops_kit_auth.roles import (
    CONTAINER_TYPES,
    PERSON_ROLES,
    ROLE_GRANTS,
    PeopleError,
    is_read_validator,
    read_people,
)


def validate_can_read_experiment() -> bool:
    return True


def validate_can_search_runs() -> bool:
    return True


def validate_can_create_experiment() -> bool:
    return True


def validate_can_update_run() -> bool:
    return True


def validate_can_readonly_trick() -> bool:  # a name that merely starts with "read"
    return True


@pytest.mark.parametrize(
    ("validator", "read"),
    [
        (validate_can_read_experiment, True),
        (validate_can_search_runs, True),
        (functools.partial(validate_can_read_experiment), True),
        (validate_can_create_experiment, False),
        (validate_can_update_run, False),
        (validate_can_readonly_trick, False),
        (lambda: True, False),
    ],
)
def test_read_validators_are_told_by_name_and_unknown_ones_are_writes(
    validator: object, read: bool
) -> None:
    assert is_read_validator(validator) is read


def test_every_person_role_has_grants_and_the_metrics_role_denies_all() -> None:
    assert set(PERSON_ROLES) <= set(ROLE_GRANTS)
    assert {permission for _, permission in ROLE_GRANTS["reader"]} == {"READ"}
    assert {permission for _, permission in ROLE_GRANTS["editor"]} == {"EDIT"}
    metrics = dict(ROLE_GRANTS["metrics"])
    assert set(metrics.values()) == {"DENY"}
    assert {kind for kind, _ in ROLE_GRANTS["reader"]} <= set(metrics)


def test_editors_hold_no_grant_that_would_shadow_a_creators_manage() -> None:
    # MLflow judges a run, trace, logged model or version by its container's grant only when
    # the caller holds no grant on its own type; a role-wide EDIT there would decide instead,
    # and EDIT cannot delete: a creator could then delete neither the run nor, as a delete
    # cascades, the experiment or model holding it.
    assert {kind for kind, _ in ROLE_GRANTS["editor"]} == set(CONTAINER_TYPES)
    assert set(CONTAINER_TYPES) == {"experiment", "registered_model", "prompt"}


def write_people(directory: Path, people: object, passwords: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "people.json").write_text(json.dumps(people))
    for name, password in passwords.items():
        (directory / f"{name}.password").write_text(password + "\n")
    return directory


def test_people_are_read_with_their_passwords(tmp_path: Path) -> None:
    directory = write_people(
        tmp_path,
        [{"name": "alice", "role": "editor", "dvc": "write"}, {"name": "bob", "role": "reader"}],
        {"alice": "a" * 20, "bob": "b" * 20},
    )
    accounts = read_people(directory, "admin", "metrics")
    assert [(a.name, a.role, a.password, a.dvc) for a in accounts] == [
        ("alice", "editor", "a" * 20, "write"),
        ("bob", "reader", "b" * 20, "none"),  # no dvc: no access to the remote
    ]
    assert "a" * 20 not in repr(accounts)


@pytest.mark.parametrize(
    ("people", "passwords", "message"),
    [
        ({"name": "alice"}, {}, "must be a list"),
        ([{"name": "Alice!", "role": "editor"}], {}, "must match"),
        ([{"name": "admin", "role": "editor"}], {"admin": "x" * 20}, "reserved"),
        ([{"name": "metrics", "role": "reader"}], {"metrics": "x" * 20}, "reserved"),
        ([{"name": "alice", "role": "owner"}], {"alice": "x" * 20}, "must be one of"),
        ([{"name": "alice", "role": "editor"}], {}, "has no"),
        ([{"name": "alice", "role": "editor", "dvc": "rw"}], {"alice": "x" * 20}, "dvc 'rw'"),
        ([{"name": "alice", "role": "editor"}], {"alice": "short"}, "at least 12"),
        (
            [{"name": "alice", "role": "editor"}, {"name": "alice", "role": "reader"}],
            {"alice": "x" * 20},
            "listed twice",
        ),
    ],
)
def test_bad_people_lists_name_the_problem(
    tmp_path: Path, people: object, passwords: dict[str, str], message: str
) -> None:
    directory = write_people(tmp_path, people, passwords)
    with pytest.raises(PeopleError, match=message):
        read_people(directory, "admin", "metrics")


def test_roles_stay_cached_as_long_as_mlflow_keeps_a_password() -> None:
    """One TTL (MLFLOW_AUTH_CACHE_TTL_SECONDS via MLflow's auth config) for both caches."""
    from types import SimpleNamespace

    from mlops_kit_auth import role_cache_ttl

    assert role_cache_ttl(SimpleNamespace(auth_cache_ttl_seconds=45)) == 45
    assert role_cache_ttl(SimpleNamespace(auth_cache_ttl_seconds=0)) == 0
    assert role_cache_ttl(SimpleNamespace()) == 0
