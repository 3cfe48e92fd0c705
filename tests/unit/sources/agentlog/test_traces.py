"""Which stack traces are storage failures, and which header and operation they belong to."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.sources.agentlog import parse_lines
from tests.support.logtext import (
    HEADERS,
    JERSEY_EXC,
    KVM,
    NOISE,
    NOW_2026,
    of,
)

STORAGE_FRAMES = [
    (f"{KVM}.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath(LinstorStorageAdaptor."
     "java:390)", "LinstorStorageAdaptor", "disk-cleanup"),
    (f"{KVM}.storage.LibvirtStorageAdaptor.createStoragePool(LibvirtStorageAdaptor.java:672)",
     "LibvirtStorageAdaptor", "pool-create"),
    (f"{KVM}.storage.ScaleIOStorageAdaptor.deleteStoragePool(ScaleIOStorageAdaptor.java:200)",
     "ScaleIOStorageAdaptor", "pool-delete"),
    (f"{KVM}.storage.FiberChannelAdapter.disconnectPhysicalDisk(FiberChannelAdapter.java:99)",
     "FiberChannelAdapter", "disk-cleanup"),
    (f"{KVM}.storage.KVMStoragePoolManager.getStoragePool(KVMStoragePoolManager.java:300)",
     "KVMStoragePoolManager", ""),
]
OTHER_FRAMES = [
    "com.cloud.agent.Agent.processRequest(Agent.java:677)",
    "java.base/java.lang.Thread.run(Thread.java:829)",
    f"{KVM}.resource.LibvirtComputingResource.executeRequest(LibvirtComputingResource.java:1906)",
    "org.libvirt.Connect.storagePoolLookupByUUIDString(Unknown Source)",
]


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(st.sampled_from(NOISE[:3]), max_size=4),
    frames=st.lists(st.sampled_from(OTHER_FRAMES), max_size=8),
    storage=st.sampled_from(STORAGE_FRAMES),
    at=st.integers(min_value=0, max_value=8),
    indent=st.sampled_from(["\t", "        ", "       "]),
    layout=st.sampled_from(["log4j1", "log4j2", "quoted", "journald"]),
    tail=st.lists(st.sampled_from(OTHER_FRAMES), max_size=3),
)
def test_trace_attaches_to_its_header(before, frames, storage, at, indent, layout, tail):
    frame, adaptor, operation = storage
    frames = list(frames)
    frames.insert(min(at, len(frames)), frame)
    header = HEADERS[layout].format(lvl="WARN", cat="cloud.agent.Agent", msg="Caught: ")
    prefix = {"quoted": "> ", "journald": "Mar  1 10:00:00 kvm-1 java[1234]: "}.get(layout, "")
    trace = [prefix + "com.cloud.utils.exception.CloudRuntimeException: boom"]
    trace += [f"{prefix}{indent}at {f}" for f in frames]
    trace += [f"{prefix}Caused by: org.libvirt.LibvirtException: x"]
    trace += [f"{prefix}{indent}at {f}" for f in tail]
    add = HEADERS[layout].format(lvl="INFO", cat="kvm.storage.LibvirtStorageAdaptor",
                                 msg="Found existing defined storage pool p-1, using it.")
    lines = before + [header] + trace + [add]
    events = list(parse_lines(lines, now=NOW_2026))
    assert [e.kind for e in events] == ["storage-failure", "pool-add"]
    failure, pool = events
    assert failure.line == len(before) + 1
    assert (failure.adaptor, failure.operation) == (adaptor, operation)
    assert failure.exception == "com.cloud.utils.exception.CloudRuntimeException: boom"
    assert pool.line == len(lines)


# ------------------------------------------- ConnectException outside the storage client

NON_STORAGE_CONNECT_TRACES = {
    "sun.net.www": [
        "java.net.ConnectException: Connection refused (Connection refused)",
        "\tat java.base/java.net.PlainSocketImpl.socketConnect(Native Method)",
        "\tat java.base/java.net.Socket.connect(Socket.java:609)",
        "\tat java.base/sun.net.NetworkClient.doConnect(NetworkClient.java:177)",
        "\tat java.base/sun.net.www.http.HttpClient.openServer(HttpClient.java:474)",
        "\tat java.base/sun.net.www.protocol.http.HttpURLConnection.connect(HttpURLConnection"
        ".java:1015)",
        "\tat com.cloud.utils.UriUtils.getRemoteSize(UriUtils.java:280)",
        "\tat com.cloud.agent.Agent.processRequest(Agent.java:677)",
    ],
    "commons-httpclient": [
        "java.net.ConnectException: Connection refused (Connection refused)",
        "\tat java.net.PlainSocketImpl.socketConnect(Native Method)",
        "\tat java.net.Socket.connect(Socket.java:589)",
        "\tat org.apache.commons.httpclient.protocol.DefaultProtocolSocketFactory.createSocket"
        "(DefaultProtocolSocketFactory.java:80)",
        "\tat org.apache.commons.httpclient.HttpConnection.open(HttpConnection.java:707)",
        "\tat org.apache.commons.httpclient.HttpMethodDirector.executeWithRetry(HttpMethodDirector"
        ".java:387)",
        "\tat org.apache.commons.httpclient.HttpClient.executeMethod(HttpClient.java:323)",
        "\tat com.cloud.storage.template.HttpTemplateDownloader.download(HttpTemplateDownloader"
        ".java:240)",
    ],
}


@pytest.mark.parametrize("client", sorted(NON_STORAGE_CONNECT_TRACES))
@pytest.mark.parametrize("as_fragment", [False, True], ids=["caught", "fragment"])
def test_connect_exception_of_another_client_is_not_a_storage_failure(client, as_fragment):
    """Only the Jersey client (LINSTOR's) stands in for a missing adaptor frame; a refused
    template download or remote-size check is not the storage backend failing."""
    trace = NON_STORAGE_CONNECT_TRACES[client]
    header = [] if as_fragment else [
        "2024-03-01 10:00:00,123 WARN  [cloud.agent.Agent] (agentRequest-Handler-2:null) "
        "(logid:9a1b) Caught: "]
    assert of(list(parse_lines(header + trace, now=NOW_2026)), "storage-failure") == []


def test_connect_exception_still_counts_beside_an_adaptor_frame_or_the_jersey_client():
    header = ("2024-03-01 10:00:00,123 WARN  [cloud.agent.Agent] (agentRequest-Handler-2:null) "
              "(logid:9a1b) Caught: ")
    refused = "java.net.ConnectException: Connection refused (Connection refused)"
    socket_frame = "\tat java.net.Socket.connect(Socket.java:589)"
    adaptor = (f"\tat {KVM}.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath("
               "LinstorStorageAdaptor.java:390)")
    jersey = "\tat org.glassfish.jersey.client.ClientRuntime.invoke(ClientRuntime.java:254)"
    [by_frame] = parse_lines([header, refused, socket_frame, adaptor], now=NOW_2026)
    assert (by_frame.adaptor, by_frame.operation) == ("LinstorStorageAdaptor", "disk-cleanup")
    assert by_frame.exception == refused
    [by_client] = parse_lines([header, refused, socket_frame, jersey], now=NOW_2026)
    assert by_client.adaptor == "LinstorStorageAdaptor"
    assert "inferred from the Jersey client failure" in by_client.detail
    [by_exception] = parse_lines([JERSEY_EXC, socket_frame], now=NOW_2026)
    assert by_exception.adaptor == "LinstorStorageAdaptor" and by_exception.line == 1
