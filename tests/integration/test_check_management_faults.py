"""`cloudstack-guard check` against a management API that fails in the ways a real one
does: refusing the key, erroring, answering a web page, answering too slowly, dribbling
its answer, and closing mid-answer.

Why: monitoring runs `check` under its own timeout (10 s by default) and drops every
finding when it is killed, and an operator reads the one-line source detail to tell a
rotated key from a dead proxy. So under each fault the whole command, run as a
subprocess the way monitoring runs it, must end within its own deadline, mark
`management` not ok in one line that names the fault and carries no credential, and
still judge what the other sources show: here a failed VM stop in the agent log.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

from tests.support.agent_lines import LINSTOR_STOP_FAILURE
from tests.support.emulators.management import AUTH_ERROR_TEXT, ManagementEmulator, compute_signature
from tests.support.host import API_KEY, API_SECRET, GuardHost

MGMT_TIMEOUT_S = 2.0
"""Short, so a fault costs seconds; cs truncates the timeout to whole seconds."""

CHECK_DEADLINE_S = MGMT_TIMEOUT_S + 1.0
"""guard/collect.py's _management_deadline: the whole management read gets one timeout
plus a second, and the check waits for nothing longer (no pool is probed here)."""

START_MARGIN_S = 2.5
"""Interpreter start, imports and output on a loaded two-core machine; a healthy check
takes well under a second there."""

WRONG_SECRET = "rotated-secret-5d20"


def _rotated_secret(host: GuardHost) -> None:
    """The key pair was rotated on the server: the guard signs with a secret it no longer
    knows, and CloudStack refuses the signature with its 401."""
    credentials = host.root / "cloudstack.ini"
    text = credentials.read_text()
    assert f"secret = {API_SECRET}\n" in text, text
    credentials.write_text(text.replace(f"secret = {API_SECRET}\n", f"secret = {WRONG_SECRET}\n"))
    os.chmod(credentials, 0o600)


def _proxy_error_page(host: GuardHost) -> None:
    """The servlet container or a proxy in front of the API answers its own 500 page."""
    host.mgmt.garbage(
        "<html><head><title>500 Internal Server Error</title></head>\n<body>\n"
        "<center><h1>500 Internal Server Error</h1></center>\n</body></html>\n",
        "text/html", status=500)


def _portal_page(host: GuardHost) -> None:
    """A captive portal or a proxy's sign-in page: HTTP 200, but a web page."""
    host.mgmt.garbage(
        "<!DOCTYPE html>\n<html><head><title>Sign in to the proxy</title></head>\n"
        "<body><form method=post>...</form></body></html>\n",
        "text/html; charset=utf-8")


FAULTS: dict[str, tuple[Callable[[GuardHost], None], tuple[str, ...]]] = {
    # fault: (how the world gets it, what the management detail must say)
    "401": (_rotated_secret, ("listHosts", "401", AUTH_ERROR_TEXT)),
    "500-json": (lambda h: h.mgmt.fail(500, "Internal error executing command"),
                 ("listHosts", "500", "Internal error executing command")),
    "500-html": (_proxy_error_page, ("listHosts", "HTTP 500", "not JSON", "text/html")),
    "200-html": (_portal_page, ("listHosts", "not JSON", "text/html", "Sign in to the proxy")),
    "slow": (lambda h: h.mgmt.slow(30.0), ("listHosts", "no answer")),
    "trickle": (lambda h: h.mgmt.trickle(interval=0.5, pieces=40), ("no complete answer",)),
    "close-mid-answer": (lambda h: h.mgmt.close_mid_answer(), ("listHosts", "closed", "mid-answer")),
}


def _short_timeout(host: GuardHost) -> None:
    text = host.config.read_text()
    assert text.count('timeout = "5s"') == 1, text
    host.write_config(text.replace('timeout = "5s"', f'timeout = "{MGMT_TIMEOUT_S:g}s"'))


@pytest.mark.parametrize("fault", list(FAULTS))
def test_check_under_a_management_fault(host: GuardHost, fault: str) -> None:
    make_fault, wanted = FAULTS[fault]
    _short_timeout(host)
    host.append_log(LINSTOR_STOP_FAILURE.format(ts=time.strftime("%Y-%m-%d %H:%M:%S,000")))
    make_fault(host)

    run = host.check()

    assert run.elapsed < CHECK_DEADLINE_S + START_MARGIN_S, (fault, run.elapsed)
    assert "Traceback" not in run.stderr, run.stderr
    management = run.doc["sources"]["management"]
    detail = management["detail"]
    assert management["ok"] is False, management
    assert "\n" not in detail and "\r" not in detail, detail
    for part in wanted:
        assert part in detail, (fault, detail)
    for secret in (API_KEY, API_SECRET, WRONG_SECRET, "signature="):
        assert secret not in run.stdout and secret not in run.stderr, (fault, secret)

    # The other sources are still read and judged.
    assert all(run.doc["sources"][name]["ok"] for name in ("libvirt", "agent-log", "agent-process")), \
        run.doc["sources"]
    assert run.kinds() == ["source-unavailable", "stop-failure"], json.dumps(run.doc["findings"], indent=1)
    [unavailable] = run.findings("source-unavailable")
    assert unavailable["source"] == "management" and unavailable["severity"] == "UNKNOWN"
    [failure] = run.findings("stop-failure")
    assert failure["adaptor"] == "LinstorStorageAdaptor" and failure["severity"] == "CRITICAL"
    # Without the listing a removed pool cannot be told from an outage: no restart advice.
    assert failure["restart_helps"] is False, failure
    assert run.returncode == 2, run.stdout


def _raw_list_hosts(emulator: ManagementEmulator) -> bytes:
    """One signed listHosts over a bare socket, read until the server closes."""
    params = {"command": "listHosts", "response": "json", "apiKey": "test-key"}
    query = urlencode({**params, "signature": compute_signature(params, "test-secret")})
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as conn:
        conn.sendall(f"GET /client/api?{query} HTTP/1.0\r\n\r\n".encode("ascii"))
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_close_mid_answer_is_a_short_body_then_eof() -> None:
    """What the check above meets on the wire: the headers of the real answer, promising
    its whole body, part of that body, then the server closes (a FIN, as a killed server or
    a broken proxy upstream leaves it), so only Content-Length tells the client."""
    with ManagementEmulator() as emulator:
        emulator.add_host("kvm-a")
        whole = _raw_list_hosts(emulator)
        emulator.close_mid_answer()
        cut = _raw_list_hosts(emulator)
    head, _, body = cut.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert lines[0] == "HTTP/1.0 200 OK", lines
    full_body = whole.partition(b"\r\n\r\n")[2]
    assert int(fields["Content-Length"]) == len(full_body) > len(body) > 0
    assert full_body.startswith(body), (body, full_body)
