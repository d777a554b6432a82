"""People (values `people`): their MLflow accounts, their SFTP access, and what nobody gets.

Each person has their own MLflow password (the people Secret, mounted at MLFLOW_PEOPLE_DIR) and
their own SFTP key lines; the admin password is the platform engineer's, and Prometheus scrapes
with the metrics account.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from chartlib import Rendered, RenderError, env_map, helm_template, render_notes
from conftest import ALICE_KEY, BOB_KEY, CAROL_KEY, ED25519_PUBLIC, PEOPLE
from test_chart_values import names_the_problem


def pod(rendered: Rendered, kind: str, suffix: str) -> dict[str, Any]:
    doc = rendered.get(kind, suffix)
    return doc["spec"] if kind == "Pod" else doc["spec"]["template"]["spec"]


def access_lines(rendered: Rendered) -> dict[str, list[str]]:
    data = rendered.get("ConfigMap", "-sftp-access").get("data") or {}
    return {name: value.splitlines() for name, value in data.items()}


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def volume(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in spec["volumes"] if v["name"] == name)


def mount(container: dict[str, Any], path: str) -> dict[str, Any]:
    return next(m for m in container["volumeMounts"] if m["mountPath"] == path)


# ---------- the SFTP access list ----------


def test_proxied_artifacts_give_people_the_dvc_area_only(
    matrix_renders: dict[str, Rendered],
) -> None:
    lines = access_lines(matrix_renders["people"])
    assert lines == {
        "person-alice": [f"dvc rw {ALICE_KEY}"],
        "person-bob": [f"dvc ro {BOB_KEY}"],
    }, "carol (dvc none) and dave (no key) get no line; nobody gets the artifact area"
    assert CAROL_KEY not in str(matrix_renders["people"].get("ConfigMap", "-sftp-access"))


def test_direct_artifacts_give_the_artifact_area_to_the_same_key_by_role(
    matrix_renders: dict[str, Rendered],
) -> None:
    """One key per person: its DVC line by dvc and its artifact line by MLflow role (the image
    merges a key's lines, each area with its own mode), as on the Docker target."""
    lines = access_lines(matrix_renders["direct-artifacts"])
    assert lines == {
        "person-alice": [f"dvc rw {ALICE_KEY}", f"artifacts rw {ALICE_KEY}"],  # editor
        "person-bob": [f"dvc ro {BOB_KEY}", f"artifacts ro {BOB_KEY}"],  # reader
        "person-carol": [f"artifacts rw {CAROL_KEY}"],  # admin, dvc none: no DVC line
    }, "dave (no key) gets no line"


def test_no_key_is_listed_twice_for_one_area(matrix_renders: dict[str, Rendered]) -> None:
    """The SFTP image refuses to start when a key stands twice for one area."""
    for case in ("people", "direct-artifacts"):
        grants = [
            (line.split()[0], " ".join(line.split()[2:4]))
            for lines in access_lines(matrix_renders[case]).values()
            for line in lines
        ]
        assert len(grants) == len(set(grants)), case


def test_defaults_have_an_empty_people_access_list(matrix_renders: dict[str, Rendered]) -> None:
    assert access_lines(matrix_renders["defaults"]) == {}


def test_sftp_reads_the_access_list_from_read_only_mounts(
    matrix_renders: dict[str, Rendered],
) -> None:
    spec = pod(matrix_renders["people"], "Deployment", "-sftp")
    sftp = spec["containers"][0]
    env = env_map(sftp)
    assert env["SFTP_ACCESS"] == "/etc/sftp/access"
    assert "SFTP_AUTHORIZED_KEYS" not in env
    for path in ("/etc/sftp/access", "/etc/sftp/host-keys"):
        assert mount(sftp, path)["readOnly"] is True, path
    # The init container writes it: MLflow's key (artifacts rw), the helm test keys, the people.
    (init,) = [c for c in spec["initContainers"] if c["name"] == "access"]
    assert init["args"] == [
        "access", "/etc/mlflow/sftp/id_rsa", "/etc/sftp/tests", "/etc/sftp/people",
        "/etc/sftp/access",
    ]  # fmt: skip
    assert volume(spec, mount(init, "/etc/sftp/people")["name"])["configMap"]["name"].endswith(
        "-sftp-access"
    )
    assert volume(spec, mount(init, "/etc/sftp/tests")["name"])["secret"]["secretName"].endswith(
        "-tests"
    )
    assert volume(spec, mount(sftp, "/etc/sftp/access")["name"]) == volume(
        spec, mount(init, "/etc/sftp/access")["name"]
    )
    assert "host-keys" not in {m["name"] for m in init["volumeMounts"]}


def test_the_access_script_gives_mlflow_the_artifact_area_only() -> None:
    script = (
        Path(__file__).resolve().parents[2] / "charts/mlops-kit/files/public-keys.sh"
    ).read_text()
    assert "'artifacts rw %s mlflow-server\\n'" in script
    assert "dvc rw %s helm-test-dvc-rw\\ndvc ro %s helm-test-dvc-ro" in script


def test_tests_accounts_off_removes_the_test_keys(helm: Path) -> None:
    rendered = helm_template(helm, {"tests": {"accounts": False}, "people": PEOPLE[:1]})
    assert "smoke-mlops-kit-tests" not in rendered.names("Secret")
    spec = pod(rendered, "Deployment", "-sftp")
    assert "test-keys" not in {v["name"] for v in spec["volumes"]}
    people = decoded(rendered.get("Secret", "-mlflow-people"))
    assert json.loads(people["people.json"]) == [
        {"name": "alice", "role": "editor", "dvc": "write"}
    ]
    test_env = env_map(pod(rendered, "Pod", "-smoke-test")["containers"][0])
    assert "SMOKE_SFTP_WRITER_KEY_FILE" not in test_env
    assert "SMOKE_READER_USERNAME" not in test_env


# ---------- MLflow accounts ----------


def test_people_secret_holds_the_list_and_a_password_each(
    matrix_renders: dict[str, Rendered],
) -> None:
    secret = matrix_renders["people"].get("Secret", "-mlflow-people")
    data = decoded(secret)
    assert json.loads(data["people.json"]) == [
        {"name": "alice", "role": "editor", "dvc": "write"},
        {"name": "bob", "role": "reader", "dvc": "read"},
        {"name": "carol", "role": "admin", "dvc": "none"},
        {"name": "dave", "role": "reader", "dvc": "none"},  # no dvc: none
        {"name": "helm-test-reader", "role": "reader"},
    ]
    # dave's password comes from his own Secret.
    assert set(data) == {
        "people.json", "alice.password", "bob.password", "carol.password",
        "helm-test-reader.password",
    }  # fmt: skip
    passwords = [v for k, v in data.items() if k.endswith(".password")]
    assert all(len(p) == 40 for p in passwords)
    assert len(set(passwords)) == len(passwords)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_people_passwords_are_looked_up_before_generating() -> None:
    text = (
        Path(__file__).resolve().parents[2] / "charts/mlops-kit/templates/secrets.yaml"
    ).read_text()
    assert (
        'lookup "v1" "Secret" .Release.Namespace (include "mlops-kit.people.secretName" .)' in text
    )
    assert "hasKey $data $key | ternary (get $data $key)" in text
    # A person's own existingSecret is read too, so changing it restarts MLflow.
    helpers = (
        Path(__file__).resolve().parents[2] / "charts/mlops-kit/templates/_helpers.tpl"
    ).read_text()
    assert 'lookup "v1" "Secret" $.Release.Namespace .existingSecret' in helpers


def test_mlflow_mounts_the_people_dir_read_only(matrix_renders: dict[str, Rendered]) -> None:
    spec = pod(matrix_renders["people"], "Deployment", "-mlflow")
    server, wait = spec["containers"][0], spec["initContainers"][-1]
    assert env_map(server)["MLFLOW_PEOPLE_DIR"] == "/etc/mlflow/people"
    assert mount(server, "/etc/mlflow/people")["readOnly"] is True
    # The schema gate reads the databases alone: no one's password.
    assert "MLFLOW_PEOPLE_DIR" not in env_map(wait)
    assert "/etc/mlflow/people" not in {m["mountPath"] for m in wait["volumeMounts"]}
    sources = volume(spec, "people")["projected"]["sources"]
    assert sources[0] == {"secret": {"name": "smoke-mlops-kit-mlflow-people"}}
    assert sources[1:] == [
        {
            "secret": {
                "name": "dave-mlflow-password",
                "items": [{"key": "password", "path": "dave.password"}],
            }
        }
    ]


def test_the_admin_password_reaches_only_mlflow_and_the_test_pod(
    matrix_renders: dict[str, Rendered],
) -> None:
    rendered = matrix_renders["people"]
    users = set()
    for doc in rendered.docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Pod"} and "admin-password" in json.dumps(
            doc
        ):
            users.add(f"{doc['kind']}/{doc['metadata']['name']}")
    assert users == {"Deployment/smoke-mlops-kit-mlflow", "Pod/smoke-mlops-kit-smoke-test"}


def test_people_changes_restart_mlflow_and_access_changes_restart_sftp(helm: Path) -> None:
    def annotations(values: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        rendered = helm_template(helm, values)
        return (
            rendered.get("Deployment", "-mlflow")["spec"]["template"]["metadata"]["annotations"],
            rendered.get("Deployment", "-sftp")["spec"]["template"]["metadata"]["annotations"],
        )

    base = [{"name": "alice", "mlflow": "editor", "dvc": "write", "publicKey": ALICE_KEY}]
    mlflow_a, sftp_a = annotations({"people": base})
    mlflow_b, sftp_b = annotations({"people": [{**base[0], "mlflow": "reader"}]})
    _, sftp_c = annotations({"people": [{**base[0], "publicKey": ED25519_PUBLIC}]})
    assert mlflow_a["checksum/people"] != mlflow_b["checksum/people"]
    assert sftp_a["checksum/access"] == sftp_b["checksum/access"], "a role is not SFTP's business"
    assert sftp_a["checksum/access"] != sftp_c["checksum/access"]
    assert "checksum/metrics" in mlflow_a


# ---------- NOTES, validation ----------


def test_notes_never_hand_out_the_admin_password(helm: Path) -> None:
    notes = render_notes(helm, {"people": PEOPLE})
    assert "admin-password" not in notes
    assert "MLFLOW_TRACKING_PASSWORD" not in notes
    assert "platform engineer only" in notes
    assert "people/<name>/connection.env" in notes
    assert "alice (editor, dvc write)" in notes
    assert "authorizedKeys" not in notes


def test_notes_say_which_areas_the_person_key_reaches(helm: Path) -> None:
    proxied = render_notes(helm, {"people": PEOPLE})
    assert "no person's key reaches the artifact area" in proxied
    direct = render_notes(helm, {"people": PEOPLE, "mlflow": {"serveArtifacts": False}})
    assert "the same key reaches the artifact area" in direct
    assert "artifactsPublicKey" not in proxied + direct


BAD_PEOPLE = [
    ([{"name": "Alice", "mlflow": "editor"}], "/people/0/name"),
    ([{"name": "admin", "mlflow": "editor"}], "/people/0/name"),
    ([{"name": "metrics", "mlflow": "reader"}], "/people/0/name"),
    ([{"name": "eve", "mlflow": "owner"}], "/people/0/mlflow"),
    ([{"name": "eve", "mlflow": "reader", "dvc": "all"}], "/people/0/dvc"),
    ([{"name": "eve", "mlflow": "reader", "publicKey": "not a key"}], "/people/0/publicKey"),
    ([{"name": "eve", "dvc": "read"}], "/people/0"),
    ([{"name": "eve", "mlflow": "reader", "role": "x"}], "/people/0"),
    # The second, artifact-area key of earlier versions: one key now reaches both areas.
    ([{"name": "eve", "mlflow": "reader", "artifactsPublicKey": ED25519_PUBLIC}], "/people/0"),
    (
        [{"name": "eve", "mlflow": "reader", "existingSecret": "Bad_Name"}],
        "/people/0/existingSecret",
    ),
]


@pytest.mark.parametrize(("people", "where"), BAD_PEOPLE, ids=[str(p[0]) for p in BAD_PEOPLE])
def test_schema_rejects_bad_people(helm: Path, people: list, where: str) -> None:
    with pytest.raises(RenderError) as failure:
        helm_template(helm, {"people": people})
    assert "values don't meet the specifications of the schema" in str(failure.value)
    assert names_the_problem(str(failure.value), where), str(failure.value)


TEMPLATE_FAILURES = [
    (
        {"people": [{"name": "alice", "mlflow": "editor"}, {"name": "alice", "mlflow": "reader"}]},
        '"alice" is listed more than once',
    ),
    (
        {"people": [{"name": "root", "mlflow": "editor"}],
         "mlflow": {"auth": {"adminUsername": "root"}}},
        'the name "root" is reserved',
    ),
    (
        {"people": [{"name": "scraper", "mlflow": "reader"}],
         "mlflow": {"metrics": {"username": "scraper"}}},
        'the name "scraper" is reserved',
    ),
    (
        {"people": [{"name": "alice", "mlflow": "editor", "dvc": "write"}]},
        "has dvc write but no publicKey",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("values", "message"), TEMPLATE_FAILURES, ids=[m for _, m in TEMPLATE_FAILURES]
)
def test_people_list_errors_stop_the_render(helm: Path, values: dict, message: str) -> None:
    with pytest.raises(RenderError, match="people: .*" + message.replace('"', '\\"')):
        helm_template(helm, values)


# ---------- helm test ----------


def test_helm_test_attacks_with_the_test_accounts(matrix_renders: dict[str, Rendered]) -> None:
    spec = pod(matrix_renders["people"], "Pod", "-smoke-test")
    container = spec["containers"][0]
    env = env_map(container)
    assert env["SMOKE_READER_USERNAME"] == "helm-test-reader"
    assert env["SMOKE_METRICS_USERNAME"] == "metrics"
    assert env["SMOKE_SFTP_DVC_PATH"] == "/data/dvc"
    assert env["SMOKE_SFTP_ARTIFACTS_PATH"] == "/data/artifacts"
    protected = env["SMOKE_SFTP_PROTECTED_FILES"].split(",")
    assert {
        "/tmp/sftp/sshd_config",
        "/tmp/sftp/home/.ssh/authorized_keys",
        "/etc/sftp/host-keys/ssh_host_ecdsa_key",
        "/tmp/sftp/host-keys/ssh_host_ecdsa_key",
        "/etc/sftp/host-keys/ssh_host_rsa_key",
        "/tmp/sftp/host-keys/ssh_host_rsa_key",
    } <= set(protected)
    assert {"/", "/data", "/data/artifacts", "/tmp/sftp"} <= set(
        env["SMOKE_SFTP_OUTSIDE_DIRS"].split(",")
    )
    reader = volume(spec, mount(container, "/etc/mlflow/tests")["name"])["secret"]
    assert reader["items"] == [{"key": "helm-test-reader.password", "path": "reader-password"}]
    keys = volume(spec, mount(container, "/etc/sftp-tests")["name"])["secret"]
    assert keys["secretName"] == "smoke-mlops-kit-tests"
    assert {"SMOKE_SFTP_WRITER_KEY_FILE", "SMOKE_SFTP_READER_KEY_FILE"} <= set(env)


def test_protected_host_keys_follow_an_existing_secret(matrix_renders: dict[str, Rendered]) -> None:
    env = env_map(pod(matrix_renders["existing-secrets"], "Pod", "-smoke-test")["containers"][0])
    assert "ssh_host_ecdsa_key" not in env["SMOKE_SFTP_PROTECTED_FILES"]


def test_external_sftp_has_no_test_keys(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["external-sftp"]
    assert "smoke-mlops-kit-tests" not in rendered.names("Secret")
    env = env_map(pod(rendered, "Pod", "-smoke-test")["containers"][0])
    assert "SMOKE_SFTP_WRITER_KEY_FILE" not in env
