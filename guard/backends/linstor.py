"""Is a LINSTOR controller answering the way the agent's adaptor needs it to?

The adaptor's disconnect path asks the controller for this node's resources; if the
controller refuses or hangs, every VM stop on the host fails. So the probe walks the
same ladder: liveness (/health), the REST API itself (/v1/controller/version, which
needs the token when auth is on), and this node as the controller sees it (/v1/nodes).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from typing import Any, Optional
from urllib.parse import quote

from guard.backends import http
from guard.backends.base import Endpoint
from guard.config import Config, LinstorConfig
from guard.model import Pool, ProbeResult
from guard.urls import without_userinfo

DEFAULT_PORTS = {"http": 3370, "https": 3371}
CLIENT_CERT_HINT = "; the controller may require a client certificate (linstor.cert, linstor.key)"
NAME = "linstor"


def load_token(path: str) -> str:
    """The bearer token from LINSTOR's auth.json (java-linstor reads its top-level
    "token"); absent or unreadable means none.

    The file belongs to LINSTOR, not to us, so a broken one is not our config error: the
    probe then runs without a token and an auth failure shows as http-error 401.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    token = data.get("token", "")
    if not isinstance(token, str):
        return ""
    token = token.strip()
    # It goes into a request header: control characters would forge extra headers.
    return token if token.isascii() and token.isprintable() else ""


def ssl_context(config: LinstorConfig) -> ssl.SSLContext:
    """Verification is always on; a CA file only changes whom we trust."""
    context = ssl.create_default_context(cafile=config.ca or None)
    if config.cert:
        context.load_cert_chain(config.cert, config.key)
    return context


def _shown(text: str) -> str:
    """The controller's words in a one-line detail: an error page or a proxy's answer
    comes with newlines."""
    return "".join(c if c.isprintable() else " " for c in text)[:200]


def _json(answer: http.Answer, what: str) -> Any:
    try:
        return json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise http.ProbeError("bad-answer", f"{what} is not JSON") from None


def _check_status(answer: http.Answer, what: str) -> None:
    if answer.status >= 400:
        text = answer.body.decode("utf-8", "replace").strip()
        try:
            errors = json.loads(text)
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                text = str(errors[0].get("message", text))
        except (ValueError, RecursionError):
            pass
        raise http.ProbeError(
            "http-error", f"{what} answered HTTP {answer.status}: {_shown(text)}", answer.status
        )


async def _probe_one(
    target: http.Target, node: str, headers: dict[str, str], context: Optional[ssl.SSLContext]
) -> ProbeResult:
    started = time.monotonic()
    health = await http.get(target, "/health", ssl_context=context, closed_hint=CLIENT_CERT_HINT)
    if health.status != 404:
        _check_status(health, "/health")
    version_answer = await http.get(target, "/v1/controller/version", headers, context)
    _check_status(version_answer, "/v1/controller/version")
    version = _json(version_answer, "/v1/controller/version")
    if not isinstance(version, dict) or not isinstance(version.get("version"), str):
        raise http.ProbeError("bad-answer", "/v1/controller/version has no version")
    nodes_answer = await http.get(target, f"/v1/nodes?nodes={quote(node)}", headers, context)
    _check_status(nodes_answer, "/v1/nodes")
    nodes = _json(nodes_answer, "/v1/nodes")
    if not isinstance(nodes, list):
        raise http.ProbeError("bad-answer", "/v1/nodes is not a list")
    status = "absent"
    for entry in nodes:
        if isinstance(entry, dict) and str(entry.get("name", "")).casefold() == node.casefold():
            status = str(entry.get("connection_status", "UNKNOWN"))
    detail = f"controller {_shown(version['version'])} answers; node {node} is {_shown(status)}"
    return ProbeResult(
        NAME, target.url, "healthy", detail, time.monotonic() - started,
        version=version["version"], node_status=status,
    )


async def probe(url: str, config: LinstorConfig, timeout: float) -> ProbeResult:
    """Probe one controller URL (or a comma list of them) within `timeout` seconds in all."""
    started = time.monotonic()
    # A user:password in a URL is never sent (the token is) and must never be shown.
    urls = [without_userinfo(u) for u in url.split(",") if u.strip()]
    shown = ",".join(urls)
    if not urls:
        return ProbeResult(NAME, url, "bad-answer", "no controller URL known")
    try:
        targets = [http.parse_target(u, DEFAULT_PORTS) for u in urls]
    except ValueError as exc:
        return ProbeResult(NAME, shown, "bad-answer", f"controller URL unusable: {exc}")
    node = config.node or socket.gethostname()
    token = load_token(config.auth_json)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        context = ssl_context(config) if any(t.scheme == "https" for t in targets) else None
    except (OSError, ssl.SSLError) as exc:
        return ProbeResult(NAME, shown, "tls", f"cannot load TLS material: {exc}")

    async def attempt(target: http.Target) -> ProbeResult:
        try:
            return await _probe_one(target, node, headers, context)
        except http.ProbeError as exc:
            return ProbeResult(
                NAME, target.url, exc.status, exc.detail, time.monotonic() - started,
                http_status=exc.http_status,
            )

    tasks = [asyncio.ensure_future(attempt(t)) for t in targets]
    finished: dict[int, ProbeResult] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        pending = set(tasks)
        while pending and loop.time() < deadline:
            done, pending = await asyncio.wait(
                pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task.result().reachable:
                    return task.result()
                finished[tasks.index(task)] = task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if len(finished) == len(tasks):
        return finished[0]
    where = ", ".join(t.url for i, t in enumerate(targets) if i not in finished)
    return ProbeResult(
        NAME, where, "timeout", f"no complete answer from {where} within {timeout:g}s",
        time.monotonic() - started,
    )


class LinstorBackend:
    """The LINSTOR controller a pool's URL names (the adaptor adds http:// and port
    3370 when the pool's host field has none: LinstorStorageAdaptor)."""

    name: str = NAME
    schemes: tuple[str, ...] = ("http", "https")

    def validate(self, url: str) -> None:
        urls = [u for u in url.split(",") if u.strip()]
        if not urls:
            raise ValueError("no controller URL")
        for one in urls:
            http.parse_target(without_userinfo(one), DEFAULT_PORTS)

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        """The management server lists the controller URL as the pool's ipaddress; libvirt
        knows nothing of LINSTOR pools."""
        return Endpoint(pool.url, "management server") if pool.url and pool.origin == "management" else None

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        return await probe(endpoint, config.linstor, timeout)


BACKEND = LinstorBackend()
