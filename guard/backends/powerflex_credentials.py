"""Who the probe logs in to a PowerFlex gateway as, and the file that says so.

The gateway's /api/login takes a user and password (ScaleIOGatewayClientImpl
.authenticate). A pool URL may carry them (powerflex://USER:PASSWORD@...), but the
management server lists a pool without them, so the guard reads them from the ini file
`[powerflex] credentials` names, and the file wins when both are there. Its own module
for the care a secret needs, apart from the gateway protocol in powerflex.py: the
password never reaches a repr, and no error about the file quotes a line of it, since
that line may be the password.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    """The gateway user for /api/login; the password never reaches a repr, a result or a log."""

    username: str
    password: str = field(repr=False)


def _line_of(exc: configparser.Error) -> str:
    """Where a parse error is, never what the line says: it may be the password line."""
    line = getattr(exc, "lineno", None)
    if line is None and isinstance(exc, configparser.ParsingError) and exc.errors:
        line = exc.errors[0][0]
    return f" at line {line}" if line is not None else ""


def load_credentials(path: str) -> Credentials:
    """[powerflex] username and password from an ini file; ValueError with one line
    naming the file and what to fix, never the password."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the PowerFlex credentials "
                         f"({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the PowerFlex credentials are not UTF-8 text") from None
    except configparser.Error as exc:
        raise ValueError(f"{path}: cannot parse the PowerFlex credentials ({type(exc).__name__}"
                         f"{_line_of(exc)}); write [powerflex] with username and password") from None
    if not parser.has_section("powerflex"):
        raise ValueError(f"{path}: section [powerflex] missing; add [powerflex] with username and password")
    username = parser.get("powerflex", "username", fallback="").strip()
    password = parser.get("powerflex", "password", fallback="")
    for key, value in (("username", username), ("password", password)):
        if not value:
            raise ValueError(f"{path}: key 'powerflex.{key}' is missing or empty; set it")
    if not username.isprintable():
        raise ValueError(f"{path}: key 'powerflex.username' has control characters")
    return Credentials(username, password)
