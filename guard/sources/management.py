"""This host and the primary pools in its scope, as the management server lists them.

Read-only API calls (guard/sources/cloudstack_api.py). Deleting a pool emits no event, so polling the listing
is the only way the management server tells us a pool is gone.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Optional

import psutil

from guard.config import ManagementConfig
from guard.drivers import canonical_type
from guard.model import ManagementHost, Pool, SourceStatus, pool_id
from guard.sources.agentconf import AgentProperties
from guard.sources.cloudstack_api import ApiError, Client, one_line
from guard.urls import without_userinfo

_SECRET_PARAMS = re.compile(r"(?i)(apikey|signature|secret|key|sessionkey)=[^&\s'\"]+")


class ManagementError(Exception):
    """One line, safe to print: never carries the key, secret or signature."""


def redact(text: str) -> str:
    """Nothing the guard says may quote a request's key or signature, whatever an error
    text carries."""
    return _SECRET_PARAMS.sub(r"\1=<redacted>", text)


def _client(config: ManagementConfig) -> Client:
    creds = config.credentials
    try:
        return Client(creds.endpoint, creds.key, creds.secret, config.timeout,
                      verify_tls=config.verify_tls, ca=config.ca)
    except ApiError as exc:
        raise ManagementError(str(exc)) from None


def _call(client: Client, command: str, **params: str) -> list[dict[str, Any]]:
    try:
        return client.list_all(command, **params)
    except ApiError as exc:
        raise ManagementError(f"{command}: {redact(str(exc))}") from None


def _local_addresses() -> set[str]:
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            try:
                found.add(str(ipaddress.ip_address(address.address.split("%")[0])))
            except ValueError:
                continue
    return found


def _find_host(client: Client, config: ManagementConfig, hostname: str) -> dict[str, Any]:
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
    by_ip = [h for h in hosts if str(h.get("ipaddress", "")) in local]
    if len(by_ip) == 1:
        return by_ip[0]
    found = len(by_name) or len(by_ip)
    problem = f"{found} hosts match" if found else "no host matches"
    raise ManagementError(
        f"{problem} name {hostname} or this host's addresses; set [management] host_id"
    )


def _server_version(client: Client) -> str:
    """The release decides what the server tells agents on deletion; unknown is fine."""
    try:
        answer = client.call("listCapabilities")
    except ApiError:
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
    detail = f"{where}: host {one_line(host.name)} ({one_line(host.state)}), {len(pools)} pool(s) in scope"
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
