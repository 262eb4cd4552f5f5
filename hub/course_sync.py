"""Bring the running hub's course groups in line with the site, through its REST API.

JupyterHub reads `load_groups` only when it starts; a student added to or dropped
from a course in the site file would otherwise wait for a restart to be (or stop
being) one of the course's students for its trainers' role. The plan is pure; `sync`
does the requests with the operator's token (scopes `admin:users`, `admin:groups`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

Request = tuple[str, str, dict]   # method, path below /hub/api, JSON body


def plan(wanted: dict[str, list[str]], have: dict[str, list[str] | None], known_users: set[str]) -> list[Request]:
    """Requests that make each wanted group hold exactly its members (have: None = no such group). Pure."""
    requests: list[Request] = []
    missing = sorted({u for members in wanted.values() for u in members} - known_users)
    if missing:
        requests.append(("POST", "/users", {"usernames": missing}))
    for group, members in wanted.items():
        current = have.get(group)
        if current is None:
            requests.append(("POST", f"/groups/{group}", {"users": sorted(members)}))
            continue
        add, drop = sorted(set(members) - set(current)), sorted(set(current) - set(members))
        if add:
            requests.append(("POST", f"/groups/{group}/users", {"users": add}))
        if drop:
            requests.append(("DELETE", f"/groups/{group}/users", {"users": drop}))
    return requests


def hub_api(hub_url: str, token: str, method: str, path: str, body: dict | None = None):
    """One request to the hub's REST API with a token; the JSON answer (None when empty)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{hub_url}/hub/api{path}", data=data, method=method,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def _get_or_none(hub_url: str, token: str, path: str):
    try:
        return hub_api(hub_url, token, "GET", path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def sync(hub_url: str, token: str, wanted: dict[str, list[str]]) -> list[Request]:
    """Apply `plan` to the running hub; returns the requests made."""
    have = {}
    for group in wanted:
        model = _get_or_none(hub_url, token, f"/groups/{group}")
        have[group] = None if model is None else model["users"]
    people = {u for members in wanted.values() for u in members}
    known = {u for u in people if _get_or_none(hub_url, token, f"/users/{u}") is not None}
    done = plan(wanted, have, known)
    for method, path, body in done:
        hub_api(hub_url, token, method, path, body)
    return done
