"""Command line: argument parsing and output only; the deciding is done elsewhere."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Optional

from guard import __version__
from guard.analyze import Analysis
from guard.evaluate import overall
from guard.logsetup import FORMATS
from guard.model import Severity
from guard.report import (
    SERVICE,
    analyze_json,
    analyze_text,
    finding_line,
    json_doc,
    probe_json,
    probe_severity,
    probe_text,
    text,
)
from guard.sources.agentlog import iter_events, ordered, parse_lines

if TYPE_CHECKING:
    from guard.config import Config
    from guard.policy import Decision

# Each command imports what only it needs in its own body: `check`, run every minute,
# and `analyze`, run on gigabytes, must not pay for the others' (asyncio and every
# backend for probe, structlog for run, systemd gates for restart-agent).

ANALYZE_WORKERS = 4
PROBE_SCHEMES = "http://, https://, nfs://, rbd://, iscsi://, gluster://, storpool://, powerflex://"
"""The URL schemes `probe` takes, for its help: written out so the parser is built without
importing every backend (tests/unit/test_cli.py holds it to the backends' own list)."""

EPILOG_CHECK = """examples:
  cloudstack-guard check                  Nagios/Icinga plugin: one status line, exit 0-3
  cloudstack-guard check --json           the same as one JSON document (Zabbix, scripts)
  cloudstack-guard check --config /tmp/guard.toml
"""
EPILOG_ANALYZE = """examples:
  cloudstack-guard analyze /var/log/cloudstack/agent/agent.log.2.gz agent.log.1 agent.log
  cloudstack-guard analyze --json incident.log > timeline.json
  xclip -o | cloudstack-guard analyze -     a log pasted from a ticket
"""
EPILOG_RUN = """examples:
  systemctl start cloudstack-guard        how it normally runs (Type=notify, watchdog)
  cloudstack-guard run --log-format console --config /tmp/guard.toml
exit codes: 0 after SIGTERM, 78 on a bad config; SIGHUP reloads the config.
"""
EPILOG_RESTART = """examples:
  cloudstack-guard restart-agent --dry-run   show every gate and its reading
  cloudstack-guard restart-agent             restart when every gate passes, and verify
  cloudstack-guard restart-agent --force     after the circuit breaker opened
exit codes: 0 done (or would do), 1 refused by a gate, 2 failed.
"""
EPILOG_PROBE = """examples:
  cloudstack-guard probe http://linstor-ctl:3370
  cloudstack-guard probe nfs://nfs1/export/primary rbd://mon1,mon2,mon3/cloudstack --timeout 2
  cloudstack-guard probe 5e4a1c2b-3d4e-4f50-8a6b-7c8d9e0f1a2b --json
exit codes: 0 all healthy, 1 alive but asking for credentials, 2 any not answering as it
must, 3 an unusable target (unknown scheme, malformed URL, a pool the guard has not seen).
"""


def _unknown(message: str, as_json: bool) -> int:
    """Nagios plugins report their own failures as UNKNOWN, never as a traceback."""
    if as_json:
        print(json.dumps({"status": "UNKNOWN", "exit_code": 3, "error": message}))
    else:
        print(f"{SERVICE} UNKNOWN - {message}")
    return int(Severity.UNKNOWN)


def _emit(doc: dict) -> None:
    """Streamed, so a long analyze timeline is never held twice in memory as text."""
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _load(args: argparse.Namespace) -> Config:
    from guard.config import load_config

    return load_config(args.config)


def cmd_check(args: argparse.Namespace) -> int:
    from guard.checking import check_once
    from guard.config import ConfigError

    started = time.monotonic()
    try:
        config = _load(args)
    except ConfigError as exc:
        return _unknown(f"config: {exc}", args.json)
    findings, snap, history = check_once(config)
    elapsed = time.monotonic() - started
    if args.json:
        _emit(json_doc(findings, snap, history, elapsed))
    else:
        print(text(findings, snap, elapsed, history))
    return int(overall(findings))


def cmd_analyze(args: argparse.Namespace) -> int:
    started = time.monotonic()
    analysis = Analysis()
    sources = []
    paths = [p for p in args.files if p != "-"]
    for path in paths:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return _unknown(f"{path}: cannot read ({exc.strerror})", args.json)
    if "-" in args.files:
        analysis.feed_all(parse_lines(sys.stdin, "<stdin>"))
        sources.append("<stdin>")
    # analyze runs no threads of its own, so a big plain file may be sieved in forked
    # workers (guard/sources/agentlog/sieve.py), a few at most: it is an operator's tool
    # on a host that runs VMs.
    analysis.feed_all(iter_events(ordered(paths), workers=min(ANALYZE_WORKERS, os.cpu_count() or 1)))
    sources += paths
    findings = analysis.findings()
    elapsed = time.monotonic() - started
    status = overall(findings)
    if args.json:
        _emit(analyze_json(analysis, findings, sources))
    else:
        print(analyze_text(analysis, findings, elapsed))
    return int(status)


def cmd_probe(args: argparse.Namespace) -> int:
    import asyncio

    from guard import store as history_store
    from guard.config import ConfigError
    from guard.history import History
    from guard.probing import POOL_ID_RE, Planned, Unusable, plan, probe_planned

    try:
        config = _load(args)
    except ConfigError as exc:
        return _unknown(f"config: {exc}", args.json)
    timeout = config.probes.timeout if args.timeout is None else args.timeout
    if not 0 < timeout <= 600:
        return _unknown(f"--timeout {args.timeout:g}: give seconds between 0 and 600", args.json)
    history = History()
    if any(POOL_ID_RE.match(t) for t in args.targets):
        with contextlib.suppress(OSError):
            history, _ = history_store.load(config.state_dir)
    plans = [plan(t, history) for t in args.targets]
    unusable = next((p for p in plans if isinstance(p, Unusable)), None)
    if unusable is not None:
        return _unknown(f"{unusable.target}: {unusable.reason}", args.json)
    planned = [p for p in plans if isinstance(p, Planned)]
    results = asyncio.run(probe_planned(planned, config, timeout))
    targets = [p.target for p in planned]
    print(json.dumps(probe_json(targets, results), indent=2) if args.json else probe_text(targets, results))
    return max(int(probe_severity(r)) for r in results)


EX_CONFIG = 78


def cmd_check_config(args: argparse.Namespace) -> int:
    """ExecReload runs this before it signals the daemon, so `systemctl reload` with a
    broken config fails where the operator typed it, instead of returning 0 while only
    the journal says the reload was refused."""
    from guard.config import ConfigError

    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"cloudstack-guard: config refused: {exc}. A running daemon keeps the config it "
              "last loaded.", file=sys.stderr)
        return EX_CONFIG
    print(f"{config.path}: valid (mode {config.mode})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from guard import daemon

    return daemon.run(args.config, args.log_format)


def _print_decision(decision: Decision, unit: str) -> None:
    for reading in decision.readings:
        mark = "pass  " if reading.passed else "REFUSE"
        print(f"  [{mark}] {reading.gate:<9} {reading.reading}")
    if decision.act:
        print(f"decision: restart {unit}")
    elif decision.refused_by is not None:
        print(f"decision: no restart (refused by {decision.refused_by.gate})")


def cmd_restart_agent(args: argparse.Namespace) -> int:
    import asyncio

    from guard import store as history_store
    from guard.checking import check_once
    from guard.config import ConfigError
    from guard.elapsed import boot_ages, boot_clock
    from guard.gates import read_gates
    from guard.history import History
    from guard.policy import decide, unconfirmed
    from guard.record import close_breaker
    from guard.remediate import carry_out

    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"restart-agent: config: {exc}")
        return 2
    findings, snap, base = check_once(config)
    if any(f.restart_helps and unconfirmed(f, base) for f in findings):
        # A removal seen in one listing is confirmed by a second look before acting.
        findings, snap, base = check_once(config)
    for finding in findings:
        print(finding_line(finding))
    gates = read_gates(config, snap.agent, snap.management_host)
    if gates.agent_gone:
        print("restart-agent: the agent judged has exited meanwhile; run again to judge the one running now")
        return 1
    # Run by hand, the operator is the coordination the stagger stands in for: no waiting
    # for this host's slot, but a peer host that is down still refuses.
    decision = decide(findings, config.mode, config.remediation, base, time.time(), gates.in_flight,
                      gates.cluster, force=args.force, cluster_problem=gates.cluster_problem, wait_turn=False,
                      ages=boot_ages(base, boot_clock()))
    print(f"gates for restarting {config.agent.unit}:")
    _print_decision(decision, config.agent.unit)
    if not decision.act:
        return 1
    if args.dry_run:
        print("dry run: nothing done")
        return 0
    mine = close_breaker(base) if args.force else base
    saved = [base]

    async def persist(history: History) -> None:
        try:
            saved.append(history_store.save_merged(config.state_dir, history, saved[-1]))
        except OSError as exc:
            print(f"restart-agent: cannot record the restart in {config.state_dir}: {exc.strerror}; "
                  "the rate limits will not count it")

    mine, result = asyncio.run(carry_out(config, decision, gates.agent, mine,
                                         lambda event, **f: print(f"{event}: {f}"), time.time(), persist))
    history_store.save_merged(config.state_dir, mine, saved[-1])
    print(f"restart {'verified' if result.ok else 'FAILED'}: {result.detail} ({result.seconds:.1f}s)")
    return 0 if result.ok else 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudstack-guard",
        description="Finds storage pools a running CloudStack KVM agent still holds after "
                    "their removal, and the VM stop failures they cause.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    check = sub.add_parser("check", help="one pass: gather evidence, probe, evaluate, print",
                           epilog=EPILOG_CHECK, formatter_class=fmt)
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--config", metavar="FILE", help="config file (default "
                       "/etc/cloudstack-guard/guard.toml)")
    check.set_defaults(func=cmd_check)

    analyze = sub.add_parser("analyze", help="timeline and judgement from agent log files",
                             epilog=EPILOG_ANALYZE, formatter_class=fmt)
    analyze.add_argument("files", nargs="+", metavar="FILE",
                         help="agent log files, plain or .gz, any order; - reads standard input")
    analyze.add_argument("--json", action="store_true", help="print one JSON document with a timeline")
    analyze.set_defaults(func=cmd_analyze)

    probe = sub.add_parser("probe", help="probe storage backends and classify their answers",
                           epilog=EPILOG_PROBE, formatter_class=fmt)
    probe.add_argument("targets", nargs="+", metavar="TARGET",
                       help="a primary-storage URL (" + PROBE_SCHEMES + ") or the id of a "
                       "pool the guard has seen; several are probed at once")
    probe.add_argument("--timeout", type=float, metavar="S",
                       help="deadline for all of them together (default: [probes] timeout)")
    probe.add_argument("--json", action="store_true", help="print one JSON document")
    probe.add_argument("--config", metavar="FILE", help="config file")
    probe.set_defaults(func=cmd_probe)

    check_config = sub.add_parser("check-config", help="validate the config and exit (systemd's "
                                  "ExecReload runs it before signalling the daemon)")
    check_config.add_argument("--config", metavar="FILE", help="config file (default "
                              "/etc/cloudstack-guard/guard.toml)")
    check_config.set_defaults(func=cmd_check_config)

    run = sub.add_parser("run", help="the daemon (systemd Type=notify)", epilog=EPILOG_RUN,
                         formatter_class=fmt)
    run.add_argument("--config", metavar="FILE", help="config file")
    run.add_argument("--log-format", choices=FORMATS, default="auto",
                     help="auto: the journal under systemd, readable lines otherwise")
    run.set_defaults(func=cmd_run)

    restart = sub.add_parser("restart-agent", help="the controlled agent restart, gate by gate",
                             epilog=EPILOG_RESTART, formatter_class=fmt)
    restart.add_argument("--dry-run", action="store_true", help="read every gate, restart nothing")
    restart.add_argument("--force", action="store_true",
                         help="skip the finding, mode, rate-limit, circuit-breaker, stagger and window "
                              "gates (and close the breaker); never the in-flight-work and "
                              "peer-host-down gates")
    restart.add_argument("--config", metavar="FILE", help="config file")
    restart.set_defaults(func=cmd_restart_agent)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if _stdout_gone():
            return _reader_gone()
        return _internal_error(exc, args)
    except Exception as exc:  # noqa: BLE001 - a plugin must answer UNKNOWN, not crash
        return _internal_error(exc, args)


def _stdout_gone() -> bool:
    """Whether the broken pipe was stdout's: a pipe whose reader has closed it polls as
    an error. One elsewhere (a probe's socket) is an internal error, said as one."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _reader_gone() -> int:
    """`analyze ... | head`: the reader has what it wanted. Quiet, as Unix tools are,
    with stdout pointed at /dev/null so the interpreter's last flush cannot fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + 13


def _internal_error(exc: BaseException, args: argparse.Namespace) -> int:
    import traceback

    traceback.print_exc(file=sys.stderr)
    try:
        return _unknown(f"internal error: {type(exc).__name__}: {exc}", getattr(args, "json", False))
    except BrokenPipeError:
        return _reader_gone()


def entry() -> None:
    """The program itself: the console script, the packages' launcher, `python -m
    guard.cli`. A monitoring system starts it every minute on every host.

    Once the command is done the process ends, so its objects are frozen out of the
    collector first: otherwise the collector's last pass at exit takes every module's
    reference cycles apart one by one, a seventh of a check's wall time, for memory the
    kernel takes back at once. atexit handlers and the flushing of stdout still run.
    Callers of main() in a process that goes on are not touched.

    A name the filesystem holds in another encoding reaches a status line as a lone
    surrogate; with a strict stdout (PYTHONIOENCODING=utf-8) printing it would fail, so
    the program's streams write it as a visible escape."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
