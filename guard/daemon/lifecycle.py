"""Start, stop, reload and health: signals, sd_notify READY/STATUS/STOPPING, the
watchdog fed from the loop itself, and the metrics listener."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Optional

from guard import logsetup, notify
from guard import store as history_store
from guard.backends import all_backends
from guard.config import Config, ConfigError, load_config, parse_listen
from guard.history import History
from guard.model import SourceStatus
from guard.sources.agentconf import read_agent_properties
from guard.sources.storpoollog import SOURCE_NAME as STORPOOL_LOG

from .host_watch import follow_log, watch_agent, watch_storpool_log
from .judging import Judging
from .libvirt_watch import watch_libvirt
from .polls import poll_management, run_probes
from .runtime import Runtime
from .state import State

EX_CONFIG = 78
STOP_GRACE_S = 4.0
DEFAULT_HEALTH_TICK_S = 10.0


class Daemon:
    def __init__(self, config_path: Optional[str], config: Config) -> None:
        self.rt = Runtime(config_path, config)
        self.state = State(self.rt)
        self.judging = Judging(self.rt, self.state)

    def start_sources(self) -> None:
        rt, state = self.rt, self.state
        rt.spawn_source("agent", lambda: watch_agent(rt, state))
        rt.spawn_source("agent-log", lambda: follow_log(rt, state))
        rt.spawn_source(STORPOOL_LOG, lambda: watch_storpool_log(rt, state))
        rt.spawn_source("libvirt", lambda: watch_libvirt(rt, state))
        rt.spawn_source("management", lambda: poll_management(rt, state))
        rt.spawn_source("probes", lambda: run_probes(rt, state))

    def reload(self) -> None:
        rt = self.rt
        try:
            config = load_config(rt.config_path)
        except ConfigError as exc:
            rt.emit("reload-refused", error=str(exc), keeping=rt.config.path, level="error")
            return
        rt.emit("reloaded", config=config.path, mode=config.mode)
        if config.metrics.listen != rt.config.metrics.listen:
            rt.emit("reload-partial", detail="[metrics] listen changes take effect at the next "
                    "start of the guard", level="warning")
        rt.config = config
        rt.stop_sources()
        self.start_sources()

    async def health_tick(self) -> None:
        """The watchdog is fed from the loop itself, and only while evaluations keep up
        with changes: a wedged evaluator must get the guard restarted by systemd."""
        rt = self.rt
        interval = notify.watchdog_interval() or DEFAULT_HEALTH_TICK_S
        while not rt.stopping.is_set():
            stuck = rt.dirty.is_set() and time.monotonic() - self.judging.last_evaluation > 4 * interval
            if not stuck and notify.watchdog_interval():
                notify.notify("WATCHDOG=1")
            await rt.sleep(interval)

    async def main(self) -> int:
        import libvirtaio

        rt, state = self.rt, self.state
        loop = asyncio.get_running_loop()
        libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
        loop.add_signal_handler(signal.SIGTERM, rt.stopping.set)
        loop.add_signal_handler(signal.SIGINT, rt.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        history, status = await rt.in_thread(self._load_history)
        state.history = state.base = history
        state.mark("history", status)
        rt.emit("starting", config=rt.config.path, mode=rt.config.mode, pid=os.getpid())
        await self._listen_for_metrics()

        ready = loop.create_future()

        def first_full() -> None:
            if not ready.done():
                ready.set_result(None)

        rt.own(self.judging.loop(first_full))
        self.start_sources()
        state.props, props_status = await rt.in_thread(read_agent_properties, rt.config.agent.properties)
        state.mark("agent-properties", props_status)
        await asyncio.wait({ready, rt.own(rt.stopping.wait())}, return_when=asyncio.FIRST_COMPLETED)
        notify.notify("READY=1")
        rt.emit("ready", evaluations=self.judging.counters.evaluations)
        rt.own(self.health_tick())
        await rt.stopping.wait()

        notify.notify("STOPPING=1")
        rt.emit("stopping")
        await self.judging.save(state.history, force=True)  # the log's place, for the next start
        self.judging.metrics_server.close()
        running = list(rt.owned)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=STOP_GRACE_S)
        return 0

    async def _listen_for_metrics(self) -> None:
        """A listener that cannot bind is logged, not fatal: the guard's job is the agent.
        Its address is read at start; a reload that changes it says a restart is needed."""
        rt = self.rt
        if not rt.config.metrics.listen:
            return
        host, port = parse_listen(rt.config.metrics.listen)
        try:
            bound = await self.judging.metrics_server.start(host, port)
        except OSError as exc:
            rt.emit("metrics-listen-failed", listen=rt.config.metrics.listen, error=exc.strerror,
                    level="error")
            return
        rt.emit("metrics-listening", host=host, port=bound)

    def _load_history(self) -> tuple[History, SourceStatus]:
        with history_store.locked(self.rt.config.state_dir):
            return history_store.load(self.rt.config.state_dir)


def run(config_path: Optional[str], log_format: str) -> int:
    # Every backend is loaded now, not at the first pool of its type: a package upgrade
    # replaces the files before it restarts the daemon, and a module loaded then would
    # be the new one beside the old ones already in memory.
    all_backends()
    logsetup.configure(log_format)
    log = logsetup.get_logger()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("config-refused", error=str(exc))
        return EX_CONFIG
    try:
        history_store.ensure_state_dir(config.state_dir)
    except OSError as exc:
        log.error("state-dir-unusable", state_dir=config.state_dir, error=exc.strerror)
        return EX_CONFIG

    async def main() -> int:
        return await Daemon(config_path, config).main()

    return asyncio.run(main())
