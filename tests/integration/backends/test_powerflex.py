"""The PowerFlex probe against a gateway emulator over real HTTPS on 127.0.0.1 (in this
process, and as its own process that can be SIGSTOPped and killed) and a stand-in
drv_cfg in an SDC home laid out like a real one.

What an operator relies on: a live gateway and a registered SDC read "healthy" with the
API version and the MDM; every way either half is dead or wrong gets its status word,
names the gateway's host:port or the drv_cfg path, and says what it means for this host;
the probe never outlives its timeout; the password is never shown anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from guard.backends import powerflex, powerflex_sdc, probe_bounded
from guard.config import AgentConfig, Config, PowerFlexConfig
from guard.model import ProbeResult
from tests.support.emulators.powerflex import VERSION, PowerFlexGatewayEmulator
from tests.support.paths import REPO
from tests.support.peers.decoys import free_port, hanging_listener, web_server
from tests.support.peers.drv_cfg import MDM_1, MDM_2, StandInDrvCfg
from tests.support.peers.process import PeerError, PeerProcess
from tests.support.pki import make_test_pki, openssl, server_cert
from tests.support.real_parts import real_part_unavailable

HOST = "127.0.0.1"
USER = "admin"
PASSWORD = "Pf-" + secrets.token_hex(8)
TIMEOUT = 0.5
SLACK = 0.5
"""The deadline is a contract: the probe's own timeout plus scheduling slack, no more."""
OPENSSL_TIMEOUT = 30.0


# -- certificates ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        real_part_unavailable("openssl", "the openssl command is not installed")
    try:
        made = make_test_pki(tmp_path_factory.mktemp("pki"))
    except (RuntimeError, subprocess.SubprocessError) as exc:
        real_part_unavailable("openssl", str(exc))
    made["expired_cert"] = server_cert(made, "expired", "IP:127.0.0.1, DNS:localhost", "-1")
    if openssl("x509", "-checkend", "0", "-noout", "-in", str(made["expired_cert"])).returncode == 0:
        real_part_unavailable("openssl", "x509 -days -1 did not make an expired certificate")
    made["elsewhere_cert"] = server_cert(made, "elsewhere", "DNS:gateway.elsewhere.example", "7")
    return made


# -- peers -------------------------------------------------------------------------------


@pytest.fixture
def gateway(pki: dict[str, Path]) -> Iterator[PowerFlexGatewayEmulator]:
    with PowerFlexGatewayEmulator(pki["server_cert"], pki["server_key"], username=USER,
                                  password=PASSWORD) as emulator:
        yield emulator


@pytest.fixture
def gateway_process(pki: dict[str, Path], tmp_path: Path) -> Iterator[PeerProcess]:
    """The emulator as a daemon of its own, for what only a process can do: be paused, die."""
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD, encoding="utf-8")
    port = free_port()
    peer = PeerProcess("powerflex gateway emulator", [
        sys.executable, "-m", "tests.support.emulators.powerflex", "--port", str(port),
        "--cert", str(pki["server_cert"]), "--key", str(pki["server_key"]), "--user", USER,
        "--password-file", str(password_file)], tmp_path / "gateway.log", (port,), cwd=REPO)
    try:
        peer.start()
    except PeerError as exc:
        pytest.fail(str(exc))
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def sdc(tmp_path: Path) -> StandInDrvCfg:
    return StandInDrvCfg(tmp_path / "sdc")


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "powerflex.ini"
    path.write_text(f"[powerflex]\nusername = {USER}\npassword = {PASSWORD}\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def config(sdc_home: Path, *, credentials: Optional[Path] = None, ca: Optional[Path] = None,
           agent_properties: Optional[Path] = None) -> Config:
    """A Config that never reads this machine's own agent.properties."""
    properties = agent_properties or sdc_home.parent / "no-agent.properties"
    return Config(agent=AgentConfig(properties=str(properties)),
                  powerflex=PowerFlexConfig(credentials=str(credentials or ""), ca=str(ca or ""),
                                            sdc_home="" if agent_properties else str(sdc_home)))


def url(port: int, userinfo: str = "") -> str:
    return f"powerflex://{userinfo}{HOST}:{port}/pool1"


def run(target: str, cfg: Config, timeout: float = 3.0, bounded: bool = False) -> tuple[ProbeResult, float]:
    """The probe as the CLI runs it (one asyncio.run), with the wall time of the whole call."""
    started = time.monotonic()
    probing = probe_bounded(powerflex.BACKEND, target, cfg, timeout) if bounded \
        else powerflex.probe(target, cfg, timeout)
    result = asyncio.run(probing)
    return result, time.monotonic() - started


def paths(gateway: PowerFlexGatewayEmulator) -> list[str]:
    return [r.path for r in gateway.requests]


def assert_no_secret(result: ProbeResult) -> None:
    assert PASSWORD not in repr(result)


def gone(pid: int) -> bool:
    """Not running: reaped, or a zombie that only waits to be."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


# -- healthy -----------------------------------------------------------------------------


def test_live_gateway_and_registered_sdc_are_healthy(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, credentials: Path, pki: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    result, _ = run(url(gateway.port), config(sdc.home, credentials=credentials, ca=pki["ca"]))
    assert result.status == "healthy", result
    assert result.target == f"powerflex://{HOST}:{gateway.port}/pool1"
    assert result.version == VERSION
    assert result.node_status == f"registered with MDM {MDM_1[0]}"
    assert f"gateway {HOST}:{gateway.port}: API {VERSION} answers; login as 'admin' accepted" in result.detail
    assert f"registered with MDM {MDM_1[0]} as SDC {MDM_1[1]}" in result.detail
    # The session the probe opened is closed again; drv_cfg is only ever asked, never told.
    assert paths(gateway) == ["/api/login", "/api/version", "/api/logout"]
    assert gateway.open_sessions == 0
    assert [c.argv for c in sdc.calls()] == [["--query_mdms"]]
    assert_no_secret(result)
    assert PASSWORD not in caplog.text


def test_credentials_from_the_url_are_used_and_never_shown(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    result, _ = run(url(gateway.port, f"{USER}:{PASSWORD}@"), config(sdc.home, ca=pki["ca"]))
    assert result.status == "healthy", result
    assert result.target == f"powerflex://{HOST}:{gateway.port}/pool1"
    assert paths(gateway)[0] == "/api/login"
    assert_no_secret(result)


def test_a_real_gateway_process_through_probe_bounded(
    gateway_process: PeerProcess, sdc: StandInDrvCfg, credentials: Path, pki: dict[str, Path]
) -> None:
    port = gateway_process.ports[0]
    result, _ = run(url(port), config(sdc.home, credentials=credentials, ca=pki["ca"]), bounded=True)
    assert result.status == "healthy", result
    assert f"gateway {HOST}:{port}: API {VERSION} answers" in result.detail


def test_several_mdms_are_all_named(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, credentials: Path, pki: dict[str, Path]
) -> None:
    sdc.registered(MDM_1, MDM_2)
    result, _ = run(url(gateway.port), config(sdc.home, credentials=credentials, ca=pki["ca"]))
    assert result.status == "healthy"
    assert result.node_status == f"registered with MDM {MDM_1[0]}, {MDM_2[0]}"


# -- credentials -------------------------------------------------------------------------


def test_wrong_credentials_are_auth(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    wrong = "Wrong-" + secrets.token_hex(6)
    result, _ = run(url(gateway.port, f"{USER}:{wrong}@"), config(sdc.home, ca=pki["ca"]))
    assert (result.status, result.http_status) == ("auth", 401), result
    assert f"gateway {HOST}:{gateway.port}: answers and refuses these credentials (user 'admin'" \
        in result.detail
    assert wrong not in repr(result)
    assert paths(gateway) == ["/api/login"]


def test_without_credentials_only_the_version_is_asked(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    result, _ = run(url(gateway.port), config(sdc.home, ca=pki["ca"]))
    assert result.status == "healthy", result
    assert result.version == VERSION
    assert "no credentials configured: login not tried" in result.detail
    assert [(r.path, r.authorization) for r in gateway.requests] == [("/api/version", None)]


def test_a_gateway_that_answers_its_version_only_in_a_session(
    pki: dict[str, Path], sdc: StandInDrvCfg, credentials: Path
) -> None:
    with PowerFlexGatewayEmulator(pki["server_cert"], pki["server_key"], password=PASSWORD,
                                  version_needs_auth=True) as gateway:
        anonymous, _ = run(url(gateway.port), config(sdc.home, ca=pki["ca"]))
        logged_in, _ = run(url(gateway.port), config(sdc.home, credentials=credentials, ca=pki["ca"]))
    assert (anonymous.status, anonymous.http_status) == ("auth", 401), anonymous
    assert f"gateway {HOST}:{gateway.port}: answers and asks for credentials for /api/version" \
        in anonymous.detail
    assert "[powerflex] credentials" in anonymous.detail
    assert logged_in.status == "healthy", logged_in


def test_an_unusable_credentials_file_is_auth_and_the_gateway_is_not_asked(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.ini"
    broken.write_text(f"[powerflex]\nusername = {USER}\n{PASSWORD}\n", encoding="utf-8")
    result, _ = run(url(gateway.port), config(sdc.home, credentials=broken, ca=pki["ca"]))
    assert result.status == "auth"
    assert f"not asked: {broken}: cannot parse the PowerFlex credentials" in result.detail
    assert_no_secret(result)
    assert gateway.requests == []


# -- TLS ---------------------------------------------------------------------------------


def test_an_untrusted_certificate_is_tls_and_nothing_is_sent(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, credentials: Path
) -> None:
    result, _ = run(url(gateway.port), config(sdc.home, credentials=credentials))
    assert result.status == "tls", result
    assert f"TLS handshake with {HOST}:{gateway.port} failed" in result.detail
    assert "set [powerflex] ca" in result.detail
    assert gateway.requests == []


@pytest.mark.parametrize(("cert", "words"), [("expired_cert", "expired"),
                                             ("elsewhere_cert", "not valid for '127.0.0.1'")])
def test_an_expired_or_foreign_certificate_is_tls(
    pki: dict[str, Path], sdc: StandInDrvCfg, credentials: Path, cert: str, words: str
) -> None:
    with PowerFlexGatewayEmulator(pki[cert], pki["server_key"], password=PASSWORD) as gateway:
        result, _ = run(url(gateway.port), config(sdc.home, credentials=credentials, ca=pki["ca"]))
        assert gateway.requests == []
    assert result.status == "tls", result
    assert f"TLS handshake with {HOST}:{gateway.port} failed" in result.detail
    assert words in result.detail


def test_an_unloadable_ca_file_is_tls(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, tmp_path: Path
) -> None:
    result, _ = run(url(gateway.port), config(sdc.home, ca=tmp_path / "missing-ca.pem"))
    assert result.status == "tls"
    assert "cannot load [powerflex] ca" in result.detail


# -- the gateway dead or wrong -----------------------------------------------------------


def test_a_stopped_gateway_is_refused(
    gateway_process: PeerProcess, sdc: StandInDrvCfg, credentials: Path, pki: dict[str, Path]
) -> None:
    port = gateway_process.ports[0]
    gateway_process.stop()
    result, _ = run(url(port), config(sdc.home, credentials=credentials, ca=pki["ca"]))
    assert result.status == "refused", result
    assert f"gateway {HOST}:{port}: connection to {HOST}:{port} refused" in result.detail
    assert result.node_status == f"registered with MDM {MDM_1[0]}"


@pytest.mark.parametrize("bounded", [False, True], ids=["direct", "probe_bounded"])
def test_a_paused_gateway_times_out_within_the_deadline(
    gateway_process: PeerProcess, sdc: StandInDrvCfg, credentials: Path, pki: dict[str, Path],
    bounded: bool,
) -> None:
    port = gateway_process.ports[0]
    gateway_process.pause()
    try:
        result, elapsed = run(url(port), config(sdc.home, credentials=credentials, ca=pki["ca"]),
                              TIMEOUT, bounded=bounded)
    finally:
        gateway_process.resume()
    assert result.status == "timeout", result
    assert elapsed < TIMEOUT + SLACK
    assert f"gateway {HOST}:{port}: no complete answer to GET /api/login within {TIMEOUT:g}s" in result.detail


def test_a_gateway_that_hangs_after_the_login_times_out_naming_the_call(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, credentials: Path, pki: dict[str, Path]
) -> None:
    gateway.set_hang("/api/version")
    result, elapsed = run(url(gateway.port), config(sdc.home, credentials=credentials, ca=pki["ca"]), TIMEOUT)
    gateway.set_hang(None)
    assert result.status == "timeout", result
    assert elapsed < TIMEOUT + SLACK
    assert f"gateway {HOST}:{gateway.port}: no complete answer to GET /api/version" in result.detail


def test_a_never_answering_listener_times_out(sdc: StandInDrvCfg, credentials: Path) -> None:
    with hanging_listener() as port:
        result, elapsed = run(url(port), config(sdc.home, credentials=credentials), TIMEOUT)
    assert result.status == "timeout", result
    assert elapsed < TIMEOUT + SLACK
    assert f"gateway {HOST}:{port}: no complete answer" in result.detail


def test_a_plain_http_server_on_the_port_is_bad_answer(sdc: StandInDrvCfg, credentials: Path) -> None:
    """Plain text where TLS belongs is the wrong protocol, not a certificate problem."""
    with web_server() as port:
        result, _ = run(url(port), config(sdc.home, credentials=credentials))
    assert result.status == "bad-answer", result
    assert f"gateway {HOST}:{port}: answers in plain text, not TLS" in result.detail


@pytest.mark.parametrize(("with_credentials", "call"), [(True, "/api/login"), (False, "/api/version")])
def test_another_web_servers_page_is_bad_answer(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, credentials: Path, pki: dict[str, Path],
    with_credentials: bool, call: str,
) -> None:
    gateway.set_garbage(True)
    cfg = config(sdc.home, credentials=credentials if with_credentials else None, ca=pki["ca"])
    result, _ = run(url(gateway.port), cfg)
    assert result.status == "bad-answer", result
    assert f"gateway {HOST}:{gateway.port}: {call} did not answer a JSON string" in result.detail


# -- the SDC -----------------------------------------------------------------------------


def test_no_drv_cfg_means_no_sdc(gateway: PowerFlexGatewayEmulator, tmp_path: Path, pki: dict[str, Path]) -> None:
    home = tmp_path / "no-sdc"
    result, _ = run(url(gateway.port), config(home, ca=pki["ca"]))
    assert (result.status, result.node_status) == ("refused", "absent"), result
    assert f"SDC: the SDC is not installed on this host (no {home}/bin/drv_cfg)" in result.detail
    assert powerflex_sdc.SDC_CONSEQUENCE in result.detail
    assert f"gateway {HOST}:{gateway.port}: API {VERSION} answers" in result.detail


def test_a_failing_drv_cfg_is_refused_with_its_message(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    sdc.failing("Failed to open kernel device /dev/scini", exit_code=4)
    result, _ = run(url(gateway.port), config(sdc.home, ca=pki["ca"]))
    assert (result.status, result.node_status) == ("refused", "drv_cfg failed"), result
    assert f"{sdc.path} --query_mdms failed (exit 4): Failed to open kernel device /dev/scini" in result.detail
    assert powerflex_sdc.SDC_CONSEQUENCE in result.detail


def test_a_drv_cfg_that_cannot_run_is_refused(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    sdc.path.chmod(0o644)
    result, _ = run(url(gateway.port), config(sdc.home, ca=pki["ca"]))
    assert (result.status, result.node_status) == ("refused", "drv_cfg failed"), result
    assert f"cannot run {sdc.path} --query_mdms: Permission denied" in result.detail
    assert sdc.calls() == []


def test_a_hanging_drv_cfg_is_killed_within_the_deadline(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    sdc.hanging()
    result, elapsed = run(url(gateway.port), config(sdc.home, ca=pki["ca"]), TIMEOUT)
    assert (result.status, result.node_status) == ("timeout", "drv_cfg hung"), result
    assert elapsed < TIMEOUT + SLACK
    assert f"{sdc.path} --query_mdms did not finish within {TIMEOUT:g}s (killed)" in result.detail
    assert powerflex_sdc.SDC_CONSEQUENCE in result.detail
    pid = sdc.calls()[-1].pid
    deadline = time.monotonic() + 2.0
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(pid), f"drv_cfg {pid} still runs after the probe"


def test_an_sdc_that_knows_no_mdm_is_refused(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    sdc.registered()
    result, _ = run(url(gateway.port), config(sdc.home, ca=pki["ca"]))
    assert (result.status, result.node_status) == ("refused", "no MDM"), result
    assert "the SDC knows no MDM" in result.detail
    assert powerflex_sdc.SDC_CONSEQUENCE in result.detail


@pytest.mark.parametrize(("setup", "words"), [
    (lambda s: s.flooding(1 << 20), f"printed more than {powerflex_sdc.MAX_DRV_CFG_OUTPUT} bytes"),
    (lambda s: s.garbage("hello from somewhere else\n"), "printed neither 'Retrieved N mdm(s)'"),
], ids=["flood", "garbage"])
def test_drv_cfg_output_that_is_no_answer_is_bad_answer(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path], setup, words: str
) -> None:
    setup(sdc)
    result, _ = run(url(gateway.port), config(sdc.home, ca=pki["ca"]))
    assert result.status == "bad-answer", result
    assert f"SDC: {sdc.path} --query_mdms" in result.detail
    assert words in result.detail


def test_the_sdc_home_comes_from_agent_properties(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path], tmp_path: Path
) -> None:
    properties = tmp_path / "agent.properties"
    properties.write_text(f"host=ms1\npowerflex.sdc.home.dir={sdc.home}\n", encoding="utf-8")
    result, _ = run(url(gateway.port), config(sdc.home, ca=pki["ca"], agent_properties=properties))
    assert result.status == "healthy", result
    assert len(sdc.calls()) == 1


def test_without_any_setting_the_agents_default_sdc_home_is_asked(
    gateway: PowerFlexGatewayEmulator, pki: dict[str, Path], tmp_path: Path
) -> None:
    default = Path(powerflex_sdc.DEFAULT_SDC_HOME) / "bin" / "drv_cfg"
    if default.exists():
        pytest.skip(f"this machine has a real SDC ({default})")
    properties = tmp_path / "agent.properties"
    properties.write_text("host=ms1\n", encoding="utf-8")
    result, _ = run(url(gateway.port), config(tmp_path, ca=pki["ca"], agent_properties=properties))
    assert result.node_status == "absent"
    assert f"(no {default})" in result.detail


# -- both halves -------------------------------------------------------------------------


def test_an_unreachable_half_outranks_one_that_answers_wrongly(
    gateway: PowerFlexGatewayEmulator, sdc: StandInDrvCfg, pki: dict[str, Path]
) -> None:
    sdc.hanging()
    result, _ = run(url(gateway.port, f"{USER}:nope@"), config(sdc.home, ca=pki["ca"]), TIMEOUT)
    assert result.status == "timeout", result
    assert "answers and refuses these credentials" in result.detail
    assert "did not finish" in result.detail
