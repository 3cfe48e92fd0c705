"""This host's half of a PowerFlex pool: its SDC, asked the way the agent drives it.

The agent's data path on this host never touches the gateway: ScaleIOStorageAdaptor
drives the local SDC with `drv_cfg` (`--rescan`, `--query_vols`) and waits for
/dev/disk/by-id/emc-vol-* to appear (ScaleIOStorageAdaptor.connectPhysicalDisk,
ScaleIOUtil). Whether this host can reach a PowerFlex volume is therefore the SDC's
question, asked here with the read-only `drv_cfg --query_mdms`: a subprocess with its
own kill-and-reap rules, which the gateway half (powerflex.py, HTTPS and credentials)
shares nothing with but the Part both answer in.

How answers read: no drv_cfg, a drv_cfg that fails, or one that knows no MDM is
`refused` (nothing on this host can reach a volume); one that hangs is `timeout` and is
killed; output drv_cfg never prints is `bad-answer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import NamedTuple, Optional

from guard.backends.wire import ProbeError
from guard.config import Config
from guard.sources.agentconf import read_agent_properties

DEFAULT_SDC_HOME = "/opt/emc/scaleio/sdc"
SDC_HOME_PROPERTY = "powerflex.sdc.home.dir"
"""ScaleIOUtil.getSdcHomePath: agent.properties `powerflex.sdc.home.dir`, else the default."""

MAX_DRV_CFG_OUTPUT = 64 * 1024
"""drv_cfg --query_mdms prints one line per MDM; more than this is not its answer."""

KILL_GRACE_S = 0.05
"""How long to wait for a killed drv_cfg to be reaped: one stuck in the kernel (an SDC
ioctl in D state) is never reaped, and the probe must not wait for it."""

SDC_CONSEQUENCE = ("VM starts and volume attaches with PowerFlex volumes on this host will fail "
                   "(the agent finds mapped volumes through drv_cfg)")

_RETRIEVED = re.compile(r"^Retrieved\s+(\d{1,6})\s+mdm\(s\)", re.IGNORECASE)
_HEX = r"(?:0[xX])?([0-9A-Fa-f]{1,32})"
# ScaleIOUtil's sample: "MDM-ID 3ef46cbf2aaf5d0f SDC ID 6b18479c00000003 INSTALLATION ID
# 68ab55462cbb3ae4 IPs [0]-x.x.x.x [1]-x.x.x.x"; goscaleio's drv_cfg.go reads the same two ids.
_MDM_LINE = re.compile(rf"^MDM-ID\s+{_HEX}\s+SDC\s+ID\s+{_HEX}"
                       rf"(?:\s+INSTALLATION\s+ID\s+{_HEX})?(?:\s+IPs\s*(.*))?$")
_MDM_IP = re.compile(r"\[\d+\]-(\S+)")


class Part(NamedTuple):
    """How one half (the gateway, the SDC) answered."""

    status: str
    detail: str
    version: str = ""
    node_status: str = ""
    http_status: Optional[int] = None


class Mdm(NamedTuple):
    """One MDM (PowerFlex system) the SDC knows, as drv_cfg --query_mdms lists it."""

    mdm_id: str
    sdc_id: str
    installation_id: str
    ips: tuple[str, ...]


def sdc_home(config: Config) -> str:
    """Where the SDC's drv_cfg lives, as the agent finds it (ScaleIOUtil.getSdcHomePath)."""
    if config.powerflex.sdc_home:
        return config.powerflex.sdc_home
    props, _ = read_agent_properties(config.agent.properties)
    value = props.values.get(SDC_HOME_PROPERTY, "").strip() if props else ""
    return value or DEFAULT_SDC_HOME


def parse_query_mdms(data: bytes) -> tuple[Mdm, ...]:
    """drv_cfg --query_mdms output: "Retrieved N mdm(s)", then one MDM-ID line per MDM
    (the format ScaleIOUtil.getSdcId reads with awk). An SDC that knows no MDM prints
    "Retrieved 0 mdm(s)"; output with neither line is no answer of drv_cfg's."""
    if len(data) > MAX_DRV_CFG_OUTPUT:
        raise ProbeError("bad-answer", f"drv_cfg printed more than {MAX_DRV_CFG_OUTPUT} bytes")
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    reported: Optional[int] = None
    mdms = []
    for line in lines:
        retrieved = _RETRIEVED.match(line)
        if retrieved:
            reported = int(retrieved.group(1))
            continue
        if not line.startswith("MDM-ID"):
            continue
        match = _MDM_LINE.match(line)
        if match is None:
            raise ProbeError("bad-answer", f"drv_cfg printed an MDM line it never prints: {line[:80]!r}")
        mdm_id, sdc_id, installation, ips = match.groups()
        mdms.append(Mdm(mdm_id.lower(), sdc_id.lower(), (installation or "").lower(),
                        tuple(_MDM_IP.findall(ips or ""))))
    if reported is None and not mdms:
        first = next((line for line in lines if line), "")
        raise ProbeError("bad-answer", "drv_cfg printed neither 'Retrieved N mdm(s)' nor an MDM line: "
                         f"{first[:80]!r}")
    if reported and not mdms:
        raise ProbeError("bad-answer", f"drv_cfg reported {reported} MDM(s) but listed none")
    return tuple(mdms)


class _DrvCfgOutput(asyncio.SubprocessProtocol):
    """drv_cfg's stdout and stderr together, capped; `finished` once it has exited and
    closed them, or printed more than drv_cfg ever does."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.output = bytearray()
        self.overflow = False
        self.finished: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.overflow:
            return
        self.output += data[:MAX_DRV_CFG_OUTPUT + 1 - len(self.output)]
        if len(self.output) > MAX_DRV_CFG_OUTPUT:
            self.overflow = True
            self._finish()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


def _first_line(output: bytes) -> str:
    for line in output.decode("utf-8", "replace").splitlines():
        if line.strip():
            return "".join(c if c.isprintable() else " " for c in line.strip())[:200]
    return "(no output)"


async def _run_drv_cfg(path: str, deadline: float, timeout: float) -> Part:
    """drv_cfg --query_mdms under the deadline. An asyncio subprocess, not subprocess.run
    in a thread: a drv_cfg stuck in the kernel (an SDC ioctl in D state) cannot be reaped,
    and a thread waiting for it would keep the guard from exiting; this one is killed,
    its pipes closed, and it is left to the child watcher."""
    loop = asyncio.get_running_loop()
    command = f"{path} --query_mdms"
    try:
        transport, collected = await loop.subprocess_exec(
            lambda: _DrvCfgOutput(loop), path, "--query_mdms", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        return Part("refused", f"cannot run {command}: {exc.strerror or exc}; {SDC_CONSEQUENCE}",
                    node_status="drv_cfg failed")
    try:
        await asyncio.wait_for(asyncio.shield(collected.finished), deadline - loop.time())
    except asyncio.TimeoutError:
        return Part("timeout", f"{command} did not finish within {timeout:g}s (killed): the SDC "
                    f"driver may be hung; {SDC_CONSEQUENCE}", node_status="drv_cfg hung")
    finally:
        # close() kills a child still running; a killed one is usually reaped at once.
        transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(collected.finished), KILL_GRACE_S)
    if collected.overflow:
        return Part("bad-answer", f"{command} printed more than {MAX_DRV_CFG_OUTPUT} bytes",
                    node_status="unknown")
    output = bytes(collected.output)
    code = transport.get_returncode()  # set: the transport finishes only after the exit
    if code != 0:
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return Part("refused", f"{command} failed ({how}): {_first_line(output)}; {SDC_CONSEQUENCE}",
                    node_status="drv_cfg failed")
    try:
        mdms = parse_query_mdms(output)
    except ProbeError as exc:
        return Part("bad-answer", f"{command}: {exc.detail}", node_status="unknown")
    if not mdms:
        return Part("refused", "the SDC knows no MDM (drv_cfg --query_mdms: Retrieved 0 mdm(s)) and "
                    f"cannot reach any PowerFlex volume; {SDC_CONSEQUENCE}", node_status="no MDM")
    known = "; ".join(f"registered with MDM {m.mdm_id} as SDC {m.sdc_id}"
                      + (f" (MDM IPs {', '.join(m.ips[:4])})" if m.ips else "") for m in mdms[:4])
    return Part("healthy", known,
                node_status="registered with MDM " + ", ".join(m.mdm_id for m in mdms[:4]))


async def sdc_part(home: str, deadline: float, timeout: float) -> Part:
    """The SDC's answer, from the drv_cfg in `home`/bin: none there means no SDC on this host."""
    path = os.path.join(home, "bin", "drv_cfg")
    if not os.path.isfile(path):
        return Part("refused", f"the SDC is not installed on this host (no {path}); {SDC_CONSEQUENCE}",
                    node_status="absent")
    return await _run_drv_cfg(path, deadline, timeout)
