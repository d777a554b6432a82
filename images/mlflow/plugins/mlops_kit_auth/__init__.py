"""MLflow's basic-auth app with mlops-kit's roles (``mlflow server --app-name mlops-kit-auth``).

Stock basic auth lets every user create experiments and registered models, and serves
``/metrics`` to admins only. This app keeps every stock check and adds two rules:

- a user holding the kit's ``reader`` role passes only reads: GET and HEAD requests, and
  requests whose MLflow check is a read (searches are POSTs). Every other request, creations
  and proxied artifact uploads or deletions included, gets 403;
- a user holding the kit's ``metrics`` role may read ``/metrics`` (and, through DENY grants,
  nothing else).

MLflow looks its validators up through module functions at request time, so wrapping those
functions is enough; the roles themselves are data (roles.py) written by people.py. The app
also keeps which experiment each run belongs to (runs.py), which MLflow otherwise loads the
whole run to learn on every request on a run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from .roles import METRICS_ROLE, WORKSPACE, is_read_validator, mlflow_role_name
from .runs import remember_runs

# Roles change only when people are converged (at a server start). The cache spares a database
# query on most requests; it keeps roles as long as MLflow keeps a verified password
# (auth_cache_ttl_seconds, MLFLOW_AUTH_CACHE_TTL_SECONDS), which bounds how long a change made on
# another replica takes to arrive. 0: no cache. Made at the first request, after the config.
_ROLE_CACHE: TTLCache[str, frozenset[str]] | None = None
_ROLE_CACHE_LOCK = threading.Lock()


def role_cache_ttl(auth_config: Any) -> int:
    """Seconds roles stay cached: MLflow's credential cache TTL (absent before MLflow 3.x: 0)."""
    return max(0, int(getattr(auth_config, "auth_cache_ttl_seconds", 0) or 0))


def _role_cache() -> TTLCache[str, frozenset[str]] | None:
    global _ROLE_CACHE
    if _ROLE_CACHE is None:
        from mlflow.server import auth

        ttl = role_cache_ttl(auth.auth_config)
        _ROLE_CACHE = TTLCache(maxsize=10_000, ttl=ttl) if ttl else None
    return _ROLE_CACHE


METRICS_PATHS = ("/metrics",)
READ_METHODS = frozenset({"GET", "HEAD"})


def kit_roles(username: str) -> frozenset[str]:
    """The kit roles (without prefix) that ``username`` holds."""
    from mlflow.server import auth

    cache = _role_cache()
    if cache is not None:
        with _ROLE_CACHE_LOCK:
            cached = cache.get(username)
        if cached is not None:
            return cached
    user = auth.store.get_user(username)
    roles = frozenset(
        role.name.removeprefix(mlflow_role_name(""))
        for role in auth.store.list_user_roles(user.id)
        if role.workspace == WORKSPACE and role.name.startswith(mlflow_role_name(""))
    )
    if cache is not None:
        with _ROLE_CACHE_LOCK:
            cache[username] = roles
    return roles


def _current_username() -> str:
    from mlflow.server import auth

    return auth.authenticate_request().username


def _unless_reader(validator: Callable[[], bool]) -> Callable[[], bool]:
    def guarded() -> bool:
        return "reader" not in kit_roles(_current_username()) and validator()

    guarded.__name__ = f"kit_writer_{getattr(validator, '__name__', 'check')}"
    return guarded


def _unless_reader_async(validator: Callable[..., Any]) -> Callable[..., Any]:
    async def guarded(username: str, request: Any) -> bool:
        return "reader" not in kit_roles(username) and await validator(username, request)

    return guarded


def _metrics_reader() -> bool:
    return METRICS_ROLE in kit_roles(_current_username())


def install_rules() -> None:
    """Wrap MLflow's validator look-ups with the kit's rules (idempotent)."""
    from mlflow.server import auth

    if getattr(auth, "_mlops_kit_rules", False):
        return
    find_validator = auth._find_validator
    find_fastapi_validator = auth._find_fastapi_validator
    find_proxy_validator = auth._get_proxy_artifact_validator

    def kit_find_validator(req: Any) -> Callable[[], bool] | None:
        if req.path in METRICS_PATHS and req.method == "GET":
            return _metrics_reader
        validator = find_validator(req)
        if validator is None or req.method in READ_METHODS or is_read_validator(validator):
            return validator
        return _unless_reader(validator)

    def kit_find_fastapi_validator(path: str, method: str) -> Callable[..., Any] | None:
        validator = find_fastapi_validator(path, method)
        if validator is None or method in READ_METHODS or is_read_validator(validator):
            return validator
        return _unless_reader_async(validator)

    def kit_find_proxy_validator(method: str, view_args: Any) -> Callable[[], bool] | None:
        validator = find_proxy_validator(method, view_args)
        if validator is None or method in READ_METHODS:
            return validator
        return _unless_reader(validator)

    auth._find_validator = kit_find_validator
    auth._find_fastapi_validator = kit_find_fastapi_validator
    auth._get_proxy_artifact_validator = kit_find_proxy_validator
    remember_runs(auth)
    auth._mlops_kit_rules = True


def create_app(app: Any = None) -> Any:
    """The ``mlflow.app`` factory: stock basic auth, then the kit's rules, in the kit's guards
    (mlops_kit_app)."""
    from mlflow.server import auth
    from mlops_kit_app import serve

    install_rules()
    return serve(auth.create_app() if app is None else auth.create_app(app))
