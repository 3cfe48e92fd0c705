"""Writes cloudstack-guard(8) in roff from the argparse definition, so the manual can
never drift from the options the program really takes.

    python3 packaging/manpage.py > cloudstack-guard.8
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guard import __version__  # noqa: E402
from guard.cli import build_parser  # noqa: E402
from guard.kinds import FINDING_KINDS, FRESH_HOST  # noqa: E402


def roff(text: str) -> str:
    """Escape for roff: backslashes, and a leading dot or quote would start a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line if line[:1] in (".", "'") else line) for line in text.splitlines())


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public walk
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help or "" for a in action._choices_actions}  # noqa: SLF001
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):  # noqa: SLF001
            continue
        if action.option_strings:
            names = ", ".join(f"\\fB{roff(o)}\\fR" for o in action.option_strings)
            if action.nargs != 0:
                names += f" \\fI{roff(action.metavar or action.dest.upper())}\\fR"
        else:
            names = f"\\fI{roff(action.metavar or action.dest)}\\fR"
        help_text = action.help or ""
        if action.choices and action.option_strings:
            help_text += f" (one of: {', '.join(map(str, action.choices))}; default {action.default})"
        lines += [".TP", names, roff(help_text)]
    return lines


def manpage() -> str:
    parser = build_parser()
    # Reproducible builds: the packager's SOURCE_DATE_EPOCH, not the build machine's clock.
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch.isdigit() \
        else datetime.datetime.now(datetime.timezone.utc)
    today = when.date().isoformat()
    out = [
        f'.TH CLOUDSTACK\\-GUARD 8 "{today}" "cloudstack-guard {__version__}" "System Administration"',
        ".SH NAME",
        "cloudstack\\-guard \\- find storage pools a running CloudStack KVM agent still holds after "
        "their removal, and restart the agent safely",
        ".SH SYNOPSIS",
    ]
    commands = _subcommands(parser)
    for _, _, sub in commands:
        program, _, rest = sub.format_usage().replace("usage: ", "").strip().partition(" ")
        out += [".B " + roff(program), roff(rest), ".br"]
    out += [".SH DESCRIPTION", roff(parser.description or ""),
            ".PP", "Configuration is read from \\fI/etc/cloudstack\\-guard/guard.toml\\fR; every key is "
            "documented in the file the package installs.",
            ".SH OPTIONS", *_options(parser),
            ".SH COMMANDS"]
    for name, help_text, sub in commands:
        out += [".SS " + roff(name), roff(help_text)]
        out += _options(sub)
        if sub.epilog:
            out += [".PP", ".nf", roff(sub.epilog.rstrip()), ".fi"]
    out += [".SH FINDINGS", "Each finding has a kind, a severity, its evidence and an action:"]
    for kind, meaning in FINDING_KINDS.items():
        out += [".TP", f"\\fB{roff(kind)}\\fR", roff(meaning)]
    out += [".PP", roff(FRESH_HOST)]
    out += [
        ".SH EXIT STATUS",
        "\\fBcheck\\fR, \\fBanalyze\\fR and \\fBprobe\\fR follow the Nagios plugin convention: 0 OK, "
        "1 WARNING, 2 CRITICAL, 3 UNKNOWN (also a bad config). \\fBrestart\\-agent\\fR: 0 done or "
        "would do, 1 refused by a gate, 2 failed. \\fBrun\\fR: 0 after SIGTERM, 78 on a bad config.",
        ".SH FILES",
        ".TP", "\\fI/etc/cloudstack\\-guard/guard.toml\\fR", "The configuration.",
        ".TP", "\\fI/etc/cloudstack\\-guard/cloudstack.ini\\fR",
        "Management API credentials (cs format), owned by root, mode 0600.",
        ".TP", "\\fI/var/lib/cloudstack\\-guard/history.json\\fR",
        "What each agent incarnation was seen to hold, restarts and the circuit breaker.",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBvirsh\\fR(1)",
    ]
    return "\n".join(line for line in out if line is not None) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manpage())
