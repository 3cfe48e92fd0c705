"""The management-server emulator against the real ``cs`` client (Debian python3-cs 2.7.1).

Why: the guard's management source is only as good as the emulator it is tested against, so
these tests pin the emulator to what CloudStack really answers and to what cs really does with
those answers (including its quirks a client has to work around).
"""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from cs import CloudStack, CloudStackApiException, CloudStackException

from tests.support.emulators.management import (
    AUTH_ERROR_TEXT,
    ManagementEmulator,
    compute_signature,
    java_url_encode,
    parse_expires,
)
from tests.support.paths import REPO

KEY = "guard-key"
SECRET = "guard-secret"


@pytest.fixture
def emu():
    with ManagementEmulator({KEY: SECRET, "other-key": "other-secret"}) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return CloudStack(emu.endpoint, KEY, SECRET, timeout=5)


def cs_signed(emu, secret=SECRET, **params):
    """Parameters signed by the cs client's own signing code, for hand-made requests."""
    params = {"apiKey": KEY, "response": "json", **params}
    CloudStack(emu.endpoint, KEY, secret)._sign(params)
    return params


def api_error(call):
    with pytest.raises(CloudStackApiException) as info:
        call()
    return info.value


def test_list_hosts_filters(emu, api):
    other = emu.add_cluster("cluster2")
    kvm1 = emu.add_host("kvm1", ipaddress="127.0.0.1")
    kvm10 = emu.add_host("kvm10", state="Disconnected")
    kvm2 = emu.add_host("kvm2", cluster_id=other["id"], resourcestate="Maintenance")
    emu.add_host("ssvm", host_type="SecondaryStorageVM", hypervisor="KVM")

    def ids(**filters):
        return {h["id"] for h in api.listHosts(**filters).get("host", [])}

    assert ids(clusterid=emu.cluster_id, type="Routing") == {kvm1["id"], kvm10["id"]}
    assert ids(name="kvm1") == {kvm1["id"], kvm10["id"]}  # name is a substring LIKE
    assert ids(id=kvm2["id"]) == {kvm2["id"]}
    assert ids(state="disconnected") == {kvm10["id"]}
    assert ids(resourcestate="Maintenance") == {kvm2["id"]}
    assert ids(type="routing", keyword="kvm", zoneid=emu.zone_id) == {
        kvm1["id"], kvm10["id"], kvm2["id"]
    }
    assert len(ids(hypervisor="KVM")) == 4
    assert len(ids(hypervisor="no-such-hypervisor")) == 4  # CloudStack ignores it
    assert ids(hypervisor="XenServer") == set()

    answer = api.listHosts(id=kvm1["id"])
    assert answer["count"] == 1
    host = answer["host"][0]
    assert host == kvm1
    assert (host["type"], host["hypervisor"], host["state"]) == ("Routing", "KVM", "Up")
    assert host["clusterid"] == emu.cluster_id and host["zoneid"] == emu.zone_id

    emu.set_host_state(kvm1["id"], "Alert")
    assert api.listHosts(id=kvm1["id"])["host"][0]["state"] == "Alert"

    err = api_error(lambda: api.listHosts(clusterid="2f0b6a0e-0000-4000-8000-000000000000"))
    assert err.response.status_code == 431
    assert err.error["errorcode"] == 431 and err.error["cserrorcode"] == 9999
    assert "Invalid parameter clusterid" in err.error["errortext"]


def test_list_storage_pools_filters_and_removal(emu, api):
    other = emu.add_cluster("cluster2")
    nfs = emu.add_pool("nfs1", path="/export/one")
    linstor = emu.add_pool(
        "linstor1", pool_type="Linstor", provider="Linstor", cluster_id=other["id"]
    )
    zone_wide = emu.add_pool("rbd-zone", pool_type="RBD", scope="ZONE", ipaddress="127.0.0.2")

    def ids(**filters):
        return {p["id"] for p in api.listStoragePools(**filters).get("storagepool", [])}

    assert ids(zoneid=emu.zone_id) == {nfs["id"], linstor["id"], zone_wide["id"]}
    # A zone-wide pool has no cluster, so a clusterid filter never returns it.
    assert ids(clusterid=emu.cluster_id) == {nfs["id"]}
    assert ids(scope="zone") == {zone_wide["id"]}
    assert ids(keyword="linstor") == {linstor["id"]}
    assert ids(path="/export/one", name="NFS1") == {nfs["id"]}
    assert ids(ipaddress="127.0.0.2") == {zone_wide["id"]}

    pool = api.listStoragePools(id=linstor["id"])["storagepool"][0]
    assert pool == linstor
    assert (pool["type"], pool["scope"], pool["state"]) == ("Linstor", "CLUSTER", "Up")
    zone_pool = api.listStoragePools(id=zone_wide["id"])["storagepool"][0]
    assert "clusterid" not in zone_pool and zone_pool["hypervisor"] == "KVM"

    emu.set_pool_state(nfs["id"], "Maintenance")
    assert ids(status="maintenance") == {nfs["id"]}

    emu.remove_pool(linstor["id"])
    assert ids() == {nfs["id"], zone_wide["id"]}
    # The removed pool's uuid no longer resolves: a 431, not an empty list.
    err = api_error(lambda: api.listStoragePools(id=linstor["id"]))
    assert err.response.status_code == 431
    assert f"value={linstor['id']}" in err.error["errortext"]

    err = api_error(lambda: api.listStoragePools(scope="rack"))
    assert (err.error["errorcode"], err.error["cserrorcode"]) == (431, 4350)
    assert err.error["errortext"] == "Invalid scope type: rack"
    with pytest.raises(KeyError):
        emu.remove_pool(linstor["id"])


def test_fetch_list_pages_with_total_count(emu, api):
    made = [emu.add_pool(f"pool{i}")["id"] for i in range(5)]
    emu.clear_requests()

    pools = api.listStoragePools(fetch_list=True, pagesize=2)

    assert [p["id"] for p in pools] == made
    assert [(r.params["page"], r.params["pagesize"]) for r in emu.requests] == [
        ("1", "2"), ("2", "2"), ("3", "2")
    ]
    assert api.listStoragePools(page=2, pagesize=2) == {
        "count": 5, "storagepool": [api.listStoragePools(id=made[2])["storagepool"][0],
                                    api.listStoragePools(id=made[3])["storagepool"][0]]
    }
    # Past the last page CloudStack keeps the count and drops the list key.
    assert api.listStoragePools(page=4, pagesize=2) == {"count": 5}


def test_empty_list_answer_shape(emu, api):
    raw = requests.get(
        emu.endpoint, params=cs_signed(emu, command="listStoragePools"), timeout=5
    )
    assert raw.status_code == 200
    assert raw.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert raw.json() == {"liststoragepoolsresponse": {}}
    # cs hands back the bare {} (no "storagepool", no "count") or [] with fetch_list.
    assert api.listStoragePools() == {}
    assert api.listStoragePools(fetch_list=True) == []


def test_paging_parameter_errors(emu, api):
    err = api_error(lambda: api.listHosts(pagesize=2))
    assert err.error["errortext"] == '"page" parameter is required when "pagesize" is specified'
    err = api_error(lambda: api.listHosts(page=1, pagesize=501))
    assert err.error == {
        "uuidList": [],
        "errorcode": 431,
        "cserrorcode": 4350,
        "errortext": "Page size can't exceed max allowed page size value: 500",
    }


def test_wrong_secret_is_refused_with_cloudstack_401(emu):
    err = api_error(lambda: CloudStack(emu.endpoint, KEY, "not-the-secret").listHosts())
    assert str(err.args[0]) == "HTTP 401 response from CloudStack"
    assert err.response.status_code == 401
    assert err.response.json() == {
        "listhostsresponse": {"uuidList": [], "errorcode": 401, "errortext": AUTH_ERROR_TEXT}
    }
    assert emu.requests[-1].refused == "signature mismatch"

    err = api_error(lambda: CloudStack(emu.endpoint, "unknown", SECRET).listStoragePools())
    assert err.error["errorcode"] == 401
    # A second configured key pair works too.
    assert CloudStack(emu.endpoint, "other-key", "other-secret").listHosts() == {}


def test_tampered_missing_and_unknown_are_refused(emu):
    params = cs_signed(emu, command="listStoragePools", zoneid=emu.zone_id)
    assert requests.get(emu.endpoint, params=params, timeout=5).status_code == 200
    assert requests.post(emu.endpoint, data=params, timeout=5).status_code == 200

    tampered = dict(params, zoneid=emu.add_zone("zone2")["id"])
    answer = requests.get(emu.endpoint, params=tampered, timeout=5)
    assert answer.status_code == 401 and emu.requests[-1].refused == "signature mismatch"

    unsigned = {k: v for k, v in params.items() if k != "signature"}
    assert requests.get(emu.endpoint, params=unsigned, timeout=5).status_code == 401

    unknown = requests.get(
        emu.endpoint, params=cs_signed(emu, command="deleteStoragePool", id="x"), timeout=5
    )
    assert unknown.status_code == 401
    assert list(unknown.json()) == ["errorresponse"]

    nameless = requests.get(emu.endpoint, params={"response": "json"}, timeout=5)
    assert nameless.status_code == 401 and list(nameless.json()) == ["null"]


def test_expires_is_enforced_only_with_signature_version_3(emu, api):
    err = api_error(
        lambda: api.listHosts(expires="2000-01-01T00:00:00+0000", signatureVersion="3")
    )
    assert err.error["errorcode"] == 401
    assert emu.requests[-1].refused.startswith("expired")
    assert api.listHosts(expires="2999-01-01T00:00:00+0000", signatureVersion="3") == {}
    # Without signatureVersion=3 CloudStack does not look at expires at all.
    assert api.listHosts(expires="2000-01-01T00:00:00+0000") == {}
    # cs's expiration=0 produces an expires that is already past by the time it arrives.
    zero = CloudStack(emu.endpoint, KEY, SECRET, expiration=timedelta(0))
    assert api_error(zero.listHosts).error["errorcode"] == 401


def test_expires_formats():
    utc = parse_expires("2024-05-01T10:00:00+0000")
    assert utc == parse_expires("2024-05-01T10:00:00Z")
    assert utc == parse_expires("2024-05-01T12:00:00+02:00")
    assert utc == parse_expires("2024-05-01T10:00:00Z+0000")
    assert utc == parse_expires("2024-05-01T10:00:00.000000Z")
    with pytest.raises(ValueError):
        parse_expires("2024-05-01 10:00:00")


def test_signature_encoding_matches_java_urlencoder(emu, api):
    assert java_url_encode("a b+c~d*e") == "a%20b%2Bc%7Ed*e"
    params = {"command": "listHosts", "apiKey": KEY, "response": "json", "name": "a b"}
    assert compute_signature(params, SECRET) == cs_signed(emu, command="listHosts", name="a b")[
        "signature"
    ]
    # cs encodes "~" as "~" where CloudStack's Java encoder writes "%7E": refused.
    assert api_error(lambda: api.listHosts(keyword="a~b")).error["errorcode"] == 401


def test_post_method(emu):
    emu.add_pool("nfs1")
    answer = CloudStack(emu.endpoint, KEY, SECRET, method="post", timeout=5).listStoragePools()
    assert answer["count"] == 1
    assert emu.requests[-1].method == "POST"
    assert "signature" not in emu.requests[-1].params


def test_list_capabilities_and_xml_default(emu, api):
    assert api.listCapabilities()["capability"]["cloudstackversion"] == "4.19.1.0"
    xml = api.listCapabilities(json=False)
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><listcapabilitiesresponse')
    assert "<cloudstackversion>4.19.1.0</cloudstackversion>" in xml


def test_stop_gives_connection_refused_and_start_reuses_port(emu, api):
    port = emu.port
    emu.stop()
    with pytest.raises(requests.exceptions.ConnectionError, match="refused"):
        api.listHosts()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    emu.start()
    assert emu.port == port
    assert api.listHosts() == {}


def test_hang_times_out_and_stop_is_prompt(emu):
    emu.hang()
    slow = CloudStack(emu.endpoint, KEY, SECRET, timeout=1)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        slow.listHosts()
    assert time.monotonic() - started < 3
    assert emu.requests[-1].status is None

    held = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
    held.sendall(b"GET /client/api?command=listHosts HTTP/1.0\r\n\r\n")
    deadline = time.monotonic() + 2
    while len(emu.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.status for r in emu.requests] == [None, None]
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 1.5
    assert held.recv(1) == b""  # closed unanswered
    held.close()


def test_cs_truncates_fractional_timeouts(emu):
    # cs 2.7.1 does int(timeout): 0.5 becomes 0, which urllib3 refuses before connecting.
    client = CloudStack(emu.endpoint, KEY, SECRET, timeout=0.5)
    assert client.timeout == 0
    with pytest.raises(ValueError, match="timeout"):
        client.listHosts()


def test_cs_ignores_verify_false():
    assert CloudStack("https://127.0.0.1/client/api", KEY, SECRET, verify=False).verify is True
    insecure = CloudStack(
        "https://127.0.0.1/client/api", KEY, SECRET, dangerous_no_tls_verify=True
    )
    assert insecure.verify is False


@pytest.mark.parametrize("status", [500, 530])
def test_error_mode(emu, api, status):
    emu.fail(status=status, errortext="database is gone")
    err = api_error(api.listStoragePools)
    assert err.response.status_code == status
    assert err.error == {
        "uuidList": [], "errorcode": status, "cserrorcode": 9999, "errortext": "database is gone"
    }
    emu.normal()
    assert api.listStoragePools() == {}


def test_garbage_mode(emu, api):
    emu.garbage()
    with pytest.raises(CloudStackException, match="JSON .* was expected") as info:
        api.listHosts()
    assert not isinstance(info.value, CloudStackApiException)
    assert info.value.response.status_code == 200

    emu.garbage(body="{not json", content_type="application/json")
    with pytest.raises(CloudStackException, match="Malformed JSON"):
        api.listHosts()


def test_agent_port_holds_connections():
    with ManagementEmulator({KEY: SECRET}, agent_port=0) as emulator:
        port = emulator.agent_port
        agent = socket.create_connection(("127.0.0.1", port), timeout=5)
        agent.sendall(b"hello")
        deadline = time.monotonic() + 2
        while emulator.agent_connection_count != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emulator.agent_connection_count == 1

        emulator.stop_agent_port()
        assert agent.recv(1) == b""
        agent.close()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED

        assert emulator.start_agent_port() == port
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_control_endpoint(emu, api):
    control = emu.control_url
    pool = requests.post(f"{control}/pools", json={"name": "nfs1"}, timeout=5)
    assert pool.status_code == 201
    pool_id = pool.json()["id"]
    assert api.listStoragePools()["storagepool"][0]["id"] == pool_id

    host = requests.post(f"{control}/hosts", json={"name": "kvm1"}, timeout=5).json()
    changed = requests.put(
        f"{control}/hosts/{host['id']}/state", json={"state": "Disconnected"}, timeout=5
    )
    assert changed.json()["state"] == "Disconnected"

    assert requests.delete(f"{control}/pools/{pool_id}", timeout=5).status_code == 204
    assert requests.delete(f"{control}/pools/{pool_id}", timeout=5).status_code == 404
    assert api.listStoragePools() == {}
    assert requests.post(f"{control}/pools", json={"nom": "x"}, timeout=5).status_code == 400

    mode = requests.put(f"{control}/mode", json={"mode": "error", "status": 530}, timeout=5)
    assert mode.json() == {"mode": "error"}
    assert api_error(api.listHosts).response.status_code == 530
    requests.put(f"{control}/mode", json={"mode": "normal"}, timeout=5)
    state = requests.get(f"{control}/state", timeout=5).json()
    assert state["removed_pools"] == [pool_id] and state["mode"] == "normal"


def test_runs_as_a_demo_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.emulators.management", "--port", "0",
         "--agent-port", "0", "--key", KEY, "--secret", SECRET],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        endpoint = proc.stdout.readline().strip()
        agent_line = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith("/client/api")
        assert agent_line.startswith("agent-port ")
        control = endpoint.replace("/client/api", "/control")
        requests.post(f"{control}/pools", json={"name": "demo"}, timeout=5)
        answer = CloudStack(endpoint, KEY, SECRET, timeout=5).listStoragePools()
        assert answer["storagepool"][0]["name"] == "demo"
        assert json.loads(requests.get(f"{control}/state", timeout=5).text)["pools"]
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        proc.stdout.close()
