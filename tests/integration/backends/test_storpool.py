"""The StorPool probe against an API emulator on 127.0.0.1 (in this process, and as its
own process that can be SIGSTOPped) and stand-in `storpool` and `storpool_confget`
executables, with real storpool.conf files in a temp dir.

What an operator relies on: "healthy" only when the API answers and the HA heartbeat's
own command says this host's client is running; every way the heartbeat would fail says
that it would reboot the host; a dead or wrong API gets its own status word and names
its host:port; the probe never outlives its timeout, and a hung `storpool` is killed;
the token is never shown; StorPool's config files are read as StorPool reads them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from guard.backends import probe_bounded, storpool
from guard.config import Config, StorPoolConfig
from guard.model import ProbeResult
from tests.support.emulators.storpool import AUTH_ERROR_DESCR, StorPoolEmulator
from tests.support.paths import REPO
from tests.support.peers.decoys import free_port, hanging_listener, web_server
from tests.support.peers.process import PeerProcess
from tests.support.peers.storpool_cli import StorPoolTools

HOST = "127.0.0.1"
TOKEN = "4417336259051736872"
OUR_ID = 3
TIMEOUT = 1.0
SLACK = 0.5
"""The deadline is a contract: the probe's own timeout plus scheduling slack, no more."""
REBOOT = "the HA heartbeat would reboot this host"


@dataclass
class StorPoolHost:
    """This host as StorPool sets one up: storpool.conf, and the two tools on it."""

    conf: Path
    tools: StorPoolTools
    config: Config

    def write_conf(self, text: str) -> None:
        self.conf.write_text(text, encoding="utf-8")


def conf_text(port: int, token: str = TOKEN, our_id: int = OUR_ID) -> str:
    return (f"# written by the test\nSP_API_HTTP_HOST={HOST}\nSP_API_HTTP_PORT={port}\n"
            f"SP_AUTH_TOKEN={token}\nSP_OURID={our_id}\n")


@pytest.fixture
def api() -> Iterator[StorPoolEmulator]:
    with StorPoolEmulator(free_port(), token=TOKEN, clients={1: "running", OUR_ID: "running"},
                          servers={1: "running", 2: "running"}) as emulator:
        yield emulator


def make_host(tmp_path: Path, port: int) -> StorPoolHost:
    tools = StorPoolTools(tmp_path / "bin")
    tools.ask_api(HOST, port, TOKEN)
    tools.confget({"SP_API_HTTP_HOST": HOST, "SP_API_HTTP_PORT": str(port), "SP_OURID": str(OUR_ID)})
    conf = tmp_path / "etc" / "storpool.conf"
    conf.parent.mkdir()
    conf.write_text(conf_text(port), encoding="utf-8")
    config = replace(Config(), storpool=StorPoolConfig(conf=str(conf), cli=tools.cli,
                                                       confget=tools.confget_path))
    return StorPoolHost(conf, tools, config)


@pytest.fixture
def host(tmp_path: Path, api: StorPoolEmulator) -> StorPoolHost:
    return make_host(tmp_path, api.port)


def run(config: Config, url: str = "storpool:", timeout: float = TIMEOUT) -> tuple[ProbeResult, float]:
    """The probe as `check` and the daemon run it, with the wall time of the whole call."""
    started = time.monotonic()
    result = asyncio.run(probe_bounded(storpool.BACKEND, url, config, timeout))
    return result, time.monotonic() - started


def run_direct(config: Config, url: str = "storpool:", timeout: float = TIMEOUT) -> ProbeResult:
    return asyncio.run(storpool.probe(url, config.storpool, timeout))


# -- healthy -----------------------------------------------------------------------------


def test_a_live_api_and_a_running_client_are_healthy(host, api):
    for result in (run(host.config)[0], run_direct(host.config)):
        assert result.status == "healthy", result.detail
        assert (result.backend, result.target, result.node_status) == ("storpool", "storpool:", "running")
        assert f"the StorPool API at {api.address} answers" in result.detail
        assert f"this host's client (SP_OURID {OUR_ID}) is running" in result.detail
        assert "the HA heartbeat passes" in result.detail
    assert api.requests[-1] == ("/ctrl/1.0/ServicesList", f"Storpool v1:{TOKEN}")


def test_cloudstacks_url_form_names_the_api_and_its_own_token(host, api):
    host.write_conf(conf_text(api.port, token="not-the-one"))
    url = f"SP_API_HTTP={api.address};SP_AUTH_TOKEN={TOKEN};SP_TEMPLATE=ssd"
    result, _ = run(host.config, url)
    assert result.status == "healthy", result.detail
    assert result.target == f"SP_API_HTTP={api.address};SP_TEMPLATE=ssd"


# -- the heartbeat's command and what it answers -----------------------------------------------


def test_this_hosts_client_down_means_the_heartbeat_would_reboot_the_host(host, api):
    api.set_client(OUR_ID, "down")
    result, _ = run(host.config)
    assert (result.status, result.node_status) == ("refused", "down")
    assert f"this host's client (SP_OURID {OUR_ID}) is 'down', not running; {REBOOT}" in result.detail
    assert f"the StorPool API at {api.address} answers" in result.detail


def test_this_hosts_client_missing_from_the_list_means_a_reboot_too(host, api):
    api.remove_client(OUR_ID)
    result, _ = run(host.config)
    assert (result.status, result.node_status) == ("refused", "absent")
    assert f"no client with nodeId {OUR_ID}" in result.detail and REBOOT in result.detail


def test_a_missing_storpool_cli_fails_the_heartbeat(host):
    host.tools.remove_cli()
    result, _ = run(host.config)
    assert result.status == "refused"
    assert f"`storpool -j service list` failed: cannot run {host.tools.cli}: No such file" in result.detail
    assert REBOOT in result.detail
    # the API still says how this host's client is
    assert result.node_status == "running"


def test_a_failing_storpool_cli_fails_the_heartbeat_with_its_message(host):
    host.tools.fail("Error: Connection to the management service failed", code=3)
    result, _ = run(host.config)
    assert result.status == "refused"
    assert ("`storpool -j service list` failed: exit 3: Error: Connection to the management "
            f"service failed; {REBOOT}") in result.detail


def test_a_hanging_storpool_cli_is_a_timeout_and_is_killed(host):
    host.tools.hang(60)
    result, elapsed = run(host.config)
    assert elapsed < TIMEOUT + SLACK
    assert result.status == "timeout" and result.node_status == "running"
    assert f"`storpool -j service list` did not finish within {TIMEOUT:g}s (killed)" in result.detail
    assert REBOOT in result.detail
    pid = host.tools.last_pid()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_an_answer_the_heartbeat_cannot_read_stops_ha_instead(host, api):
    host.tools.answer_json({"data": {"servers": {}}})
    result, _ = run(host.config)
    assert result.status == "bad-answer" and result.node_status == "running"
    assert "no data.clients object" in result.detail
    assert "KVMHAMonitor's thread would stop heartbeating every pool" in result.detail


# -- the API ----------------------------------------------------------------------------------


def test_a_stopped_api_is_refused(host, api):
    api.stop()
    result, elapsed = run(host.config)
    assert elapsed < TIMEOUT + SLACK
    assert result.status == "refused"
    assert f"connection to {api.address} refused" in result.detail
    # the CLI asks the same API: the heartbeat fails with it
    assert "`storpool -j service list` failed: exit 1" in result.detail and REBOOT in result.detail


@pytest.fixture(scope="module")
def api_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerProcess]:
    """The emulator as its own process, to be SIGSTOPped like a hung management service."""
    port = free_port()
    peer = PeerProcess("storpool api emulator", [
        sys.executable, "-m", "tests.support.emulators.storpool", "--port", str(port),
        "--token", TOKEN, "--client", f"{OUR_ID}=running"],
        tmp_path_factory.mktemp("storpool-api") / "api.log", (port,), cwd=REPO)
    # Our own emulator, always here: a start that fails is a failure, not a missing part.
    peer.start()
    yield peer
    peer.stop()


def test_a_paused_api_is_a_timeout_within_the_deadline(tmp_path, api_process):
    port = api_process.ports[0]
    host = make_host(tmp_path, port)
    assert run(host.config)[0].status == "healthy"
    api_process.pause()
    try:
        result, elapsed = run(host.config)
    finally:
        api_process.resume()
    assert elapsed < TIMEOUT + SLACK
    assert result.status == "timeout"
    assert f"the StorPool API at {HOST}:{port} did not answer GET /ctrl/1.0/ServicesList" in result.detail
    assert REBOOT in result.detail


def test_an_api_that_reads_the_request_and_never_answers_is_a_timeout(host, api):
    api.set_hang(True)
    result, elapsed = run(host.config)
    assert elapsed < TIMEOUT + SLACK
    assert result.status == "timeout" and api.address in result.detail


def test_an_api_answering_a_web_page_is_a_bad_answer(host, api):
    api.set_garbage(True)
    result, _ = run(host.config)
    assert result.status == "bad-answer" and "with no JSON: '<html>" in result.detail


def test_a_listener_that_never_answers_is_a_timeout(tmp_path):
    with hanging_listener() as port:
        host = make_host(tmp_path, port)
        result, elapsed = run(host.config)
    assert elapsed < TIMEOUT + SLACK
    assert result.status == "timeout" and f"{HOST}:{port}" in result.detail


def test_a_web_server_on_the_api_port_is_a_bad_answer(tmp_path):
    with web_server() as port:
        host = make_host(tmp_path, port)
        result, _ = run(host.config)
    assert result.status == "bad-answer"
    assert f"StorPool API at {HOST}:{port}: ServicesList answered HTTP 400 with no JSON" in result.detail


def test_a_wrong_token_is_auth_with_the_apis_words(host, api):
    host.write_conf(conf_text(api.port, token="1111111111111111111"))
    result, _ = run(host.config)
    assert (result.status, result.http_status) == ("auth", 401)
    assert f"StorPool API at {api.address}: ServicesList refused, HTTP 401" in result.detail
    assert AUTH_ERROR_DESCR in result.detail
    assert "1111111111111111111" not in result.detail


def test_a_cluster_without_quorum_is_an_http_error_with_its_description(host, api):
    api.set_cluster_down(True)
    result, _ = run(host.config)
    assert (result.status, result.http_status) == ("http-error", 503)
    assert "The cluster is not operational (transient)" in result.detail and REBOOT in result.detail


def test_the_token_is_never_shown(host, api):
    for url in (f"SP_API_HTTP={api.address};SP_AUTH_TOKEN={TOKEN};SP_TEMPLATE=ssd",
                f"storpool:SP_API_HTTP={api.address};SP_AUTH_TOKEN=9{TOKEN}",
                "storpool:", f"storpool://{api.address}",
                f"SP_API_HTTP={api.address}:99999;SP_AUTH_TOKEN={TOKEN}",
                f"storpool://root:{TOKEN}@{api.address}"):
        result, _ = run(host.config, url)
        for text in (result.target, result.detail, repr(result)):
            assert TOKEN not in text, (url, text)


# -- storpool.conf as StorPool reads it ---------------------------------------------------------


def test_a_missing_storpool_conf_says_storpool_is_not_configured(host):
    host.conf.unlink()
    result, _ = run(host.config)
    assert result.status == "refused"
    assert f"StorPool is not configured on this host: cannot read {host.conf}" in result.detail
    assert "`storpool -j service list`" in result.detail


def test_this_hosts_section_sets_sp_ourid_when_storpool_confget_is_missing(host, api):
    api.set_client(1, "down")
    host.tools.remove_confget()
    host.write_conf(conf_text(api.port, our_id=1)
                    + f"[{socket.gethostname()}]\nSP_OURID = {OUR_ID}\n[some-other-host]\nSP_OURID=1\n")
    result, _ = run(host.config)
    assert result.status == "healthy", result.detail
    assert f"SP_OURID {OUR_ID} from {host.conf}" in result.detail
    assert "storpool_confget failed: cannot run" in result.detail


def test_conf_d_is_read_after_the_main_file(host, api):
    api.set_client(1, "down")
    host.tools.remove_confget()
    host.write_conf(conf_text(free_port(), our_id=1))
    conf_d = Path(f"{host.conf}.d")
    conf_d.mkdir()
    (conf_d / "50-local.conf").write_text(f"SP_API_HTTP_PORT={api.port}\nSP_OURID={OUR_ID}\n")
    (conf_d / ".60-hidden.conf").write_text("SP_OURID=1\n")
    result, _ = run(host.config)
    assert result.status == "healthy", result.detail
    assert f"the StorPool API at {api.address} answers" in result.detail


def test_no_sp_ourid_anywhere_would_make_the_heartbeat_throw(host, api):
    """Integer.parseInt(null) in checkingHeartBeat: KVMHAMonitor's thread ends."""
    host.tools.confget_fails("storpool_confget: no such section")
    host.write_conf(conf_text(api.port).replace(f"SP_OURID={OUR_ID}\n", ""))
    result, _ = run(host.config)
    assert result.status == "bad-answer" and result.node_status == "unknown"
    assert "there is no SP_OURID, and Integer.parseInt throws" in result.detail
    assert "storpool_confget failed: exit 1: storpool_confget: no such section" in result.detail


def test_storpool_confget_wins_over_the_files_for_sp_ourid(host, api):
    """The agent reads SP_OURID only through storpool_confget."""
    api.set_client(1, "down")
    host.write_conf(conf_text(api.port, our_id=1))
    result, _ = run(host.config)
    assert result.status == "healthy" and f"SP_OURID {OUR_ID}" in result.detail


@pytest.mark.skipif(os.path.exists("/etc/storpool.conf") or shutil.which("storpool") is not None,
                    reason="this machine has StorPool installed")
def test_with_the_default_config_a_host_without_storpool_would_be_rebooted():
    """The stale-pool case itself: the agent still heartbeats a StorPool pool on a host
    whose StorPool is gone."""
    result = asyncio.run(probe_bounded(storpool.BACKEND, "storpool:", Config(), TIMEOUT))
    assert result.status == "refused" and result.node_status == "unknown"
    assert "StorPool is not configured on this host: cannot read /etc/storpool.conf" in result.detail
    assert "`storpool -j service list` failed: cannot run storpool" in result.detail
    assert REBOOT in result.detail
