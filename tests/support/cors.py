"""A malicious web page's view of MLflow: cross-origin requests as a browser sends them.

A browser attaches the credentials it holds for MLflow (cached basic auth, cookies) to a
cross-origin request of a page that asks for them (`fetch(..., {credentials: "include"})`), so
the attacks carry valid credentials. What must stop them is the server: a state-changing request
from an origin that is not in MLFLOW_CORS_ALLOWED_ORIGINS is refused before it changes anything,
and no response names that origin in Access-Control-Allow-Origin (which would let the page read
it). MLflow 3.x does this in its security middleware (mlflow/server/fastapi_security.py:
CORSBlockingMiddleware, 403 "Cross-origin request blocked"; starlette's CORSMiddleware answers
preflights). MLflow alone always lets http://localhost, 127.0.0.1 and [::1] origins in, on any
port: a page on the person's own machine would act and read with their credentials. The image
refuses those too, unless configured or the server's own address (plugins/mlops_kit_origins).

Used by tests/smoke (any deployed stack) and tests/images (the image with a configured origin).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

EVIL_ORIGIN = "https://evil.example"
# A page on the person's own machine (a dev server, a notebook extension), not the server itself.
LOCAL_PAGE_ORIGIN = "http://localhost:8888"
HOSTILE_ORIGINS = (EVIL_ORIGIN, LOCAL_PAGE_ORIGIN)
CREATE = "/api/2.0/mlflow/experiments/create"
GET_BY_NAME = "/api/2.0/mlflow/experiments/get-by-name"
DELETE = "/api/2.0/mlflow/experiments/delete"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
TIMEOUT_S = 60


@dataclass(frozen=True)
class Attempt:
    """What a page of `origin` got for a preflight and for the request itself."""

    origin: str
    preflight: requests.Response
    response: requests.Response

    @staticmethod
    def allowed_origin(response: requests.Response) -> str | None:
        return response.headers.get("Access-Control-Allow-Origin")


def preflight(base_url: str, path: str, origin: str, method: str = "POST") -> requests.Response:
    """The OPTIONS a browser sends before a non-simple request (JSON body, Authorization)."""
    return requests.options(
        base_url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=TIMEOUT_S,
    )


def create_experiment(
    base_url: str,
    auth: tuple[str, str],
    name: str,
    origin: str,
    content_type: str = "application/json",
) -> Attempt:
    """POST experiments/create from a page of `origin`, credentials attached. With
    content_type text/plain it is a "simple" request, which a browser sends without a
    preflight: only the server can refuse it."""
    response = requests.post(
        base_url + CREATE,
        data=f'{{"name": "{name}"}}',
        headers={"Origin": origin, "Content-Type": content_type},
        auth=auth,
        timeout=TIMEOUT_S,
    )
    return Attempt(origin, preflight(base_url, CREATE, origin), response)


def read_from(base_url: str, auth: tuple[str, str], origin: str) -> requests.Response:
    """A credentialed cross-origin read: it may be answered, but the page may only read the
    answer when Access-Control-Allow-Origin names its origin."""
    return requests.get(base_url + SEARCH, headers={"Origin": origin}, auth=auth, timeout=TIMEOUT_S)


def experiment_id(base_url: str, auth: tuple[str, str], name: str) -> str | None:
    """The id of the experiment called `name` (active or deleted), as its owner sees it; None
    when there is none."""
    response = requests.get(
        base_url + GET_BY_NAME, params={"experiment_name": name}, auth=auth, timeout=TIMEOUT_S
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()["experiment"]["experiment_id"]


def delete_experiment(base_url: str, auth: tuple[str, str], name: str) -> None:
    """Clean up after an allowed attempt (same-origin: no Origin header)."""
    found = experiment_id(base_url, auth, name)
    if found is not None:
        requests.post(
            base_url + DELETE, json={"experiment_id": found}, auth=auth, timeout=TIMEOUT_S
        ).raise_for_status()


def _grants(response: requests.Response, origin: str) -> bool:
    """Whether a page of `origin` may read this response."""
    return Attempt.allowed_origin(response) in {origin, "*"}


def refusal_problems(base_url: str, auth: tuple[str, str], name: str, origin: str) -> list[str]:
    """What went wrong when a page of a foreign `origin` tries to create experiment `name` with
    the victim's credentials, and to read through them; [] when everything was refused."""
    problems = []
    for content_type in ("application/json", "text/plain"):
        attempt = create_experiment(base_url, auth, name, origin, content_type)
        if attempt.response.status_code != 403:
            problems.append(
                f"POST {CREATE} ({content_type}) from {origin} answered "
                f"{attempt.response.status_code}, not 403: {attempt.response.text[:200]!r}"
            )
        if _grants(attempt.response, origin):
            problems.append(f"POST {CREATE} ({content_type}) lets {origin} read the answer")
        if _grants(attempt.preflight, origin):
            problems.append(
                f"the preflight of {CREATE} from {origin} allows it: "
                f"{Attempt.allowed_origin(attempt.preflight)!r}"
            )
    if _grants(read_from(base_url, auth, origin), origin):
        problems.append(f"GET {SEARCH} lets {origin} read the answer")
    if experiment_id(base_url, auth, name) is not None:
        problems.append(f"experiment {name!r} was created by a request from {origin}")
    return problems


def acceptance_problems(
    base_url: str,
    auth: tuple[str, str],
    name: str,
    origin: str,
    cleanup_auth: tuple[str, str] | None = None,
) -> list[str]:
    """The same request from an allowed `origin` must work, and let the page read the answer
    with credentials; [] when it did. The experiment is deleted afterwards, as `cleanup_auth`
    (default: `auth`)."""
    problems = []
    try:
        attempt = create_experiment(base_url, auth, name, origin)
        if attempt.preflight.status_code not in {200, 204}:
            problems.append(f"the preflight from {origin} answered {attempt.preflight.status_code}")
        for what, response in (("preflight", attempt.preflight), ("POST", attempt.response)):
            if Attempt.allowed_origin(response) != origin:
                problems.append(
                    f"{what}: Access-Control-Allow-Origin is "
                    f"{Attempt.allowed_origin(response)!r}, not {origin!r}"
                )
            if response.headers.get("Access-Control-Allow-Credentials") != "true":
                problems.append(f"{what}: credentials are not allowed for {origin}")
        if attempt.response.status_code != 200:
            problems.append(
                f"POST {CREATE} from {origin} answered {attempt.response.status_code}: "
                f"{attempt.response.text[:200]!r}"
            )
        if experiment_id(base_url, auth, name) is None:
            problems.append(f"experiment {name!r} does not exist after the allowed request")
    finally:
        delete_experiment(base_url, cleanup_auth or auth, name)
    return problems
