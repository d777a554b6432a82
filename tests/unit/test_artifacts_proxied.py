"""The image's server app keeps every artifact byte on the server unless
MLFLOW_PRESIGNED_ARTIFACT_URLS is true (plugins/mlops_kit_app), against the installed MLflow.
The image test (tests/images/test_mlflow_s3.py) shows the effect on a real server; this one
shows the switch works both ways and reads the contract's setting."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import Mock

import pytest
from mlopskit.contract import load_contract

PLUGINS = Path(__file__).resolve().parents[2] / "images" / "mlflow" / "plugins"
ADVERTISED = {"multipart_uploads_enabled": True, "multipart_downloads_enabled": True, "x": 1}


@pytest.fixture
def app_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin, with MLflow's handlers restored after the test and a stand-in server-info
    payload that advertises both capabilities (as MLflow does for an s3:// destination)."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    import mlops_kit_app
    from mlflow.server import handlers, server_info_api

    for name in mlops_kit_app.STORE_CAPABILITY_CHECKS:
        monkeypatch.setattr(handlers, name, getattr(handlers, name))

    def payload() -> dict[str, Any]:
        return dict(ADVERTISED)

    monkeypatch.setattr(handlers, "build_server_info_payload", payload)
    monkeypatch.setattr(server_info_api, "build_server_info_payload", payload)
    return mlops_kit_app


def capable_store() -> Mock:
    """An artifact store with every presigned/multipart capability, as MLflow checks them."""
    from mlflow.store.artifact.artifact_repo import (
        MultipartDownloadMixin,
        MultipartUploadMixin,
        PresignedUploadMixin,
    )

    class Capable(MultipartUploadMixin, MultipartDownloadMixin, PresignedUploadMixin):
        pass

    return Mock(spec=Capable)


def test_the_switch_is_the_contracts_setting(app_plugin: ModuleType) -> None:
    names = {setting.name for setting in load_contract().images["mlflow"].settings}
    assert app_plugin.PRESIGNED_URLS_SETTING in names


def test_by_default_mlflow_treats_the_store_as_one_without_presigned_urls(
    app_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.server import handlers, server_info_api

    # MLflow's checks pass for a store with every capability (as its S3 store has) ...
    for check in app_plugin.STORE_CAPABILITY_CHECKS:
        getattr(handlers, check)(capable_store())
    monkeypatch.delenv(app_plugin.PRESIGNED_URLS_SETTING, raising=False)
    app_plugin.keep_artifacts_proxied()
    # ... and refuse it once the plugin is in.
    for check, exception in app_plugin.STORE_CAPABILITY_CHECKS.items():
        with pytest.raises(getattr(handlers, exception)):
            getattr(handlers, check)(capable_store())
    expected = {"multipart_uploads_enabled": False, "multipart_downloads_enabled": False, "x": 1}
    assert handlers.build_server_info_payload() == expected
    assert server_info_api.build_server_info_payload() == expected


def test_true_leaves_mlflow_as_it_is(
    app_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.server import handlers

    monkeypatch.setenv(app_plugin.PRESIGNED_URLS_SETTING, "true")
    app_plugin.keep_artifacts_proxied()
    for check in app_plugin.STORE_CAPABILITY_CHECKS:
        getattr(handlers, check)(capable_store())
    assert handlers.build_server_info_payload() == ADVERTISED
