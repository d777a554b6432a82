"""A minimal client of the cluster's API (the admin certificate, standard library only)."""

from __future__ import annotations

import json
import ssl
import urllib.request
from functools import cache
from typing import Any

from . import config


@cache
def _context() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(config.PKI_DIR / "ca.crt"))
    context.load_cert_chain(str(config.PKI_DIR / "admin.crt"), str(config.PKI_DIR / "admin.key"))
    return context


def api_request(
    method: str, path: str, body: object = None, content_type: str = "application/json"
) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (https to the cluster's own address)
        config.API_URL + path, data=data, method=method
    )
    if data is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, context=_context(), timeout=10) as response:  # noqa: S310
        return response.read()


def api_get(path: str) -> bytes:
    return api_request("GET", path)


def api_list(path: str) -> list[dict[str, Any]]:
    return json.loads(api_get(path)).get("items", [])
