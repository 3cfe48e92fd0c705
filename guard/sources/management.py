"""This host and the primary pools in its scope, as the management server lists them.

Read-only API calls through `cs`. Deleting a pool emits no event, so polling the listing
is the only way the management server tells us a pool is gone.
"""

from __future__ import annotations

import html
import ipaddress
import re
from typing import Any, Optional

import psutil

from guard.config import ManagementConfig
from guard.drivers import canonical_type
from guard.model import ManagementHost, Pool, SourceStatus, pool_id
from guard.sources.agentconf import AgentProperties
from guard.urls import without_userinfo

_SECRET_PARAMS = re.compile(r"(?i)(apikey|signature|secret|key|sessionkey)=[^&\s'\"]+")
_TAG = re.compile(r"<[^>]*>")
_EXCERPT_CHARS = 80


class ManagementError(Exception):
    """One line, safe to print: never carries the key, secret or signature."""


def redact(text: str) -> str:
    """Exception texts from requests quote the full URL, key and signature included."""
    return _SECRET_PARAMS.sub(r"\1=<redacted>", text)


def _client(config: ManagementConfig) -> Any:
    from cs import CloudStack

    creds = config.credentials
    # cs 2.x truncates the timeout to whole seconds, and 0 makes every call fail.
    options: dict[str, Any] = {"timeout": max(1, round(config.timeout))}
    if not config.verify_tls:
        # cs 2.x ignores verify=False and keeps verifying; this is its real switch.
        options["dangerous_no_tls_verify"] = True
    elif config.ca:
        options["verify"] = config.ca
    return CloudStack(endpoint=creds.endpoint, key=creds.key, secret=creds.secret, **options)


def _call(client: Any, command: str, **params: Any) -> list[dict[str, Any]]:
    import requests
    from cs import CloudStackException

    try:
        answer = getattr(client, command)(fetch_list=True, **params)
    except requests.exceptions.Timeout:
        raise ManagementError(f"{command}: no answer within the timeout") from None
    except requests.exceptions.SSLError:
        raise ManagementError(f"{command}: TLS verification failed (set [management] ca)") from None
    except requests.exceptions.ConnectionError as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
        raise ManagementError(f"{command}: {reason}") from None
    except requests.exceptions.ChunkedEncodingError:
        # urllib3 2 holds the body to its Content-Length; 1.26 hands a short body on, and
        # _api_error_text tells it from there.
        raise ManagementError(f"{command}: the server closed the connection mid-answer") from None
    except CloudStackException as exc:
        raise ManagementError(f"{command}: {_one_line(redact(_api_error_text(exc)))}") from None
    except ValueError:
        raise ManagementError(f"{command}: the answer is not JSON") from None
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise ManagementError(f"{command}: unexpected answer shape")
    return answer


def _api_error_text(exc: Exception) -> str:
    """What was wrong with an answer cs refused, in words an operator can act on: cs says
    "HTTP 200 OK" both of a body that is not JSON and of one a closed connection cut short,
    which reads like success and points nowhere."""
    cs_says = f"API error: {exc.args[0]}" if exc.args else f"API error: {type(exc).__name__}"
    response = getattr(exc, "response", None)
    if response is None:
        return cs_says
    short = _cut_short(response)
    if short:
        return short
    try:
        body = response.json()
    except ValueError:
        status = "" if response.status_code == 200 else f"HTTP {response.status_code} {response.reason}, "
        return f"{status}the answer is not JSON: {_describe_body(response)}"
    except AttributeError:
        return cs_says
    inner = next(iter(body.values()), None) if isinstance(body, dict) else None
    if isinstance(inner, dict) and "errortext" in inner:
        return f"API error: {inner.get('errorcode', '?')} {inner['errortext']}"
    return cs_says


def _cut_short(response: Any) -> str:
    """The server promised a Content-Length and closed before sending it all (killed while
    writing, or a proxy's upstream broke). urllib3 1.26, Debian 12's, does not check."""
    try:
        promised = int(response.headers.get("Content-Length", ""))
    except (ValueError, TypeError, AttributeError):
        return ""
    tell = getattr(getattr(response, "raw", None), "tell", None)
    got = tell() if callable(tell) else None
    if not isinstance(got, int):
        if response.headers.get("Content-Encoding"):
            return ""  # the decoded body's length says nothing about the wire's
        got = len(response.content or b"")
    if got >= promised:
        return ""
    return f"the server closed the connection mid-answer ({got} of {promised} bytes)"


def _describe_body(response: Any) -> str:
    """Content type, size and the start of the text (of a web page, its words): enough to
    recognise a proxy's error page or a login portal standing where the API should be."""
    content_type = response.headers.get("Content-Type") or "no Content-Type"
    content = response.content or b""
    if not content:
        return f"{content_type}, empty"
    text = content[:4096].decode("utf-8", "replace")
    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        text = html.unescape(_TAG.sub(" ", text))
    text = _one_line("".join(c if c.isprintable() else " " for c in text))
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "..."
    size = f"{content_type}, {len(content)} bytes"
    return f"{size}: {text}" if text else size


def _one_line(text: str) -> str:
    """A status detail is one line: error texts and web pages carry newlines."""
    return " ".join(text.split())


def _local_addresses() -> set[str]:
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            try:
                found.add(str(ipaddress.ip_address(address.address.split("%")[0])))
            except ValueError:
                continue
    return found


def _find_host(client: Any, config: ManagementConfig, hostname: str) -> dict[str, Any]:
    if config.host_id:
        try:
            hosts = _call(client, "listHosts", id=config.host_id, type="Routing")
        except ManagementError as exc:
            raise ManagementError(f"[management] host_id {config.host_id} refused: {exc}") from None
        if not hosts:
            raise ManagementError(f"no host with [management] host_id {config.host_id}")
        return hosts[0]
    names = {hostname.lower(), hostname.split(".")[0].lower()}
    hosts = _call(client, "listHosts", type="Routing", hypervisor="KVM")
    by_name = [h for h in hosts if str(h.get("name", "")).lower() in names]
    if len(by_name) == 1:
        return by_name[0]
    local = _local_addresses()
    by_ip = [h for h in hosts if h.get("ipaddress") in local]
    if len(by_ip) == 1:
        return by_ip[0]
    found = len(by_name) or len(by_ip)
    problem = f"{found} hosts match" if found else "no host matches"
    raise ManagementError(
        f"{problem} name {hostname} or this host's addresses; set [management] host_id"
    )


def _server_version(client: Any) -> str:
    """The release decides what the server tells agents on deletion; unknown is fine."""
    try:
        answer = client.listCapabilities()
    except Exception:  # noqa: BLE001 - the version only refines a judgement; never fatal
        return ""
    capability = answer.get("capability", {}) if isinstance(answer, dict) else {}
    version = capability.get("cloudstackversion", "") if isinstance(capability, dict) else ""
    return version if isinstance(version, str) else ""


def _in_scope(pool: dict[str, Any], host: ManagementHost, local_uuids: set[str]) -> bool:
    scope = str(pool.get("scope", "")).upper()
    if scope == "CLUSTER":
        return pool.get("clusterid") == host.cluster_id
    if scope == "ZONE":
        return str(pool.get("hypervisor", "KVM")) in ("KVM", "Any", "")
    if scope == "HOST":
        return pool_id(str(pool.get("id", ""))) in local_uuids
    return False


def _pool(entry: dict[str, Any]) -> Pool:
    pool_type = canonical_type(str(entry.get("type", "")))
    url = str(entry.get("ipaddress", "")) if pool_type == "Linstor" else ""
    return Pool(
        uuid=pool_id(str(entry["id"])),
        type=pool_type,
        origin="management",
        name=str(entry.get("name", "")),
        state=str(entry.get("state", "")),
        source_hosts=(str(entry["ipaddress"]),) if entry.get("ipaddress") else (),
        target=str(entry.get("path", "")),
        url=url,
        scope=str(entry.get("scope", "")),
        source_path=str(entry.get("path", "")),
    )


def read_management(
    config: Optional[ManagementConfig], hostname: str, props: Optional[AgentProperties]
) -> tuple[Optional[ManagementHost], list[Pool], tuple[str, ...], SourceStatus]:
    """This host, the pools in its scope, and the uuids of the zone's other pools: a pool
    that only left this host's scope still exists, and no DeleteStoragePoolCommand was
    sent for it, which a pool missing from the whole listing cannot tell."""
    if config is None:
        return None, [], (), SourceStatus("management", True, "not configured", configured=False)
    where = redact(without_userinfo(config.credentials.endpoint))
    if props is None:
        return None, [], (), SourceStatus(
            "management", False, f"{where}: not asked, since agent.properties is unreadable and "
            "this host's own local pools cannot be told from other hosts' without it")
    try:
        client = _client(config)
        raw = _find_host(client, config, hostname)
        host = ManagementHost(
            id=str(raw.get("id", "")), name=str(raw.get("name", "")),
            state=str(raw.get("state", "")), cluster_id=str(raw.get("clusterid", "")),
            zone_id=str(raw.get("zoneid", "")), server_version=_server_version(client),
        )
        entries = _call(client, "listStoragePools", zoneid=host.zone_id)
        local = {pool_id(u) for u in props.local_storage_uuids}
        existing = [e for e in entries if e.get("id") and str(e.get("state", "")).lower() != "removed"]
        pools = [_pool(e) for e in existing if _in_scope(e, host, local)]
        mine = {p.uuid for p in pools}
        elsewhere = tuple(sorted({pool_id(str(e["id"])) for e in existing} - mine))
    except ManagementError as exc:
        return None, [], (), SourceStatus("management", False, f"{where}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a client bug must not stop the other sources
        return None, [], (), SourceStatus("management", False,
                                          f"{where}: {type(exc).__name__}: {redact(str(exc))[:200]}")
    detail = f"{where}: host {host.name} ({host.state}), {len(pools)} pool(s) in scope"
    return host, pools, elsewhere, SourceStatus("management", True, detail)



def read_cluster_hosts(config: ManagementConfig, cluster_id: str) -> tuple[ManagementHost, ...]:
    """The cluster's hypervisors now, asked fresh: the cluster gate must not act on a
    listing older than a peer's restart. Raises ManagementError."""
    entries = _call(_client(config), "listHosts", clusterid=cluster_id, type="Routing")
    return tuple(
        ManagementHost(id=str(h.get("id", "")), name=str(h.get("name", "")), state=str(h.get("state", "")),
                       cluster_id=str(h.get("clusterid", "")), zone_id=str(h.get("zoneid", "")))
        for h in entries
    )
