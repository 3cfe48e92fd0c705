"""Can this host use its PowerFlex (ScaleIO) storage: the gateway the pool was added
through, and the SDC on this host?

A PowerFlex volume reaches a VM in two halves. The management server maps it to this
host's SDC through the gateway's REST API (ScaleIOGatewayClientImpl, under /api); the
agent's ScaleIOStorageAdaptor never talks to the gateway, it drives the local SDC with
`drv_cfg` (`--rescan`, `--query_vols`) and waits for /dev/disk/by-id/emc-vol-* to appear
(ScaleIOStorageAdaptor.connectPhysicalDisk, ScaleIOUtil). So the probe asks both: the
gateway in its own protocol (`GET /api/login` with HTTP basic auth when credentials are
configured, else the credential-free `GET /api/version`), and this host's SDC with the
read-only `drv_cfg --query_mdms`. Disconnect-by-path never calls either
(ScaleIOStorageAdaptor.disconnectPhysicalDiskByPath returns false), so a stale PowerFlex
pool does not break VM stops; what this probe tells is whether the storage behind a
live pool answers, and what fails on this host when it does not.

The gateway is always HTTPS: CloudStack builds `https://HOST[:PORT]/api` from the pool's
URL (ScaleIOPrimaryDataStoreLifeCycle.initialize), so there is no plain-HTTP form and
never a fallback to one. The certificate is verified; `[powerflex] ca` names whom to
trust.

How answers read. Gateway: a 401/403 to /api/login is `auth` (it answers and refuses
these credentials); without credentials a 401 to /api/version is `auth` too (alive, but
it answers only inside a session, as goscaleio's GetVersion expects some gateways to);
plain text where the TLS handshake belongs is `bad-answer` (another server has the
port), not `tls`, which is kept for certificates and handshakes. The SDC half, and how
its answers read, is guard.backends.powerflex_sdc, the credentials file
guard.backends.powerflex_credentials; this module is the gateway half, and the probe
that asks both and combines their answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote, unquote

from guard.backends import http
from guard.backends.base import Endpoint
from guard.backends.hostport import split_host_port, usable
from guard.backends.powerflex_credentials import Credentials, load_credentials
from guard.backends.powerflex_sdc import Part, sdc_home, sdc_part
from guard.backends.wire import ProbeError
from guard.config import Config, PowerFlexConfig
from guard.model import Pool, ProbeResult

NAME = "powerflex"
SCHEME = "powerflex"
DEFAULT_PORT = 443
"""ScaleIOPrimaryDataStoreLifeCycle.initialize: no port in the URL means https's own."""
API_BASE = "/api"

MAX_TOKEN_CHARS = 4096
MAX_VERSION_CHARS = 64

TLS_HINT = ("CloudStack's management server does not verify the gateway's certificate "
            "(ScaleIOGatewayClientConnectionPool passes validateCertificate=false) but this probe "
            "does: set [powerflex] ca to the CA or certificate the gateway presents")
_URL_FORM = "write powerflex://[USER:PASSWORD@]GATEWAY[:PORT][/STORAGEPOOL]"
_ENCODE_HINT = "characters such as @ : / ? # in a password must be percent-encoded"

# OpenSSL's reasons when the peer's first bytes are no TLS record at all: a server
# speaking plain text (HTTP) on the port. 3.0 says WRONG_VERSION_NUMBER; 3.2+ may say
# RECORD_LAYER_FAILURE or PACKET_LENGTH_TOO_LONG. wire.connect_error ends its detail with
# the reason.
_PLAIN_TEXT_REASONS = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE",
                       "UNKNOWN_PROTOCOL")

_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    pool: str = ""
    """The storage pool the URL names: its name when an operator writes the URL (as
    CloudStack's form takes it), its id in the management server's listing."""
    credentials: Optional[Credentials] = field(default=None, repr=False)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL as results show it: never with the credentials."""
        path = f"/{quote(self.pool, safe='')}" if self.pool else ""
        return f"{SCHEME}://{self.where}{path}"


def _host_and_port(hostport: str) -> tuple[str, int]:
    try:
        host, port = split_host_port(hostport, "the gateway address")
    except ValueError as exc:
        raise ValueError(f"{exc}; {_URL_FORM} ({_ENCODE_HINT})") from None
    if ":" not in host and not _HOST_NAME.fullmatch(host):
        raise ValueError(f"the gateway host has characters no host name has; {_URL_FORM}")
    return host, port or DEFAULT_PORT


def _credentials(userinfo: str) -> Credentials:
    """Userinfo as CloudStack reads it: java.net.URI.getUserInfo decodes %XX, then
    ScaleIOPrimaryDataStoreLifeCycle splits user from password at a colon."""
    user_raw, colon, password_raw = userinfo.partition(":")
    if not colon:
        raise ValueError("the URL names a gateway user but no password; write USER:PASSWORD@ or "
                         "put them in [powerflex] credentials")
    username, password = unquote(user_raw), unquote(password_raw)
    if not username or not password:
        raise ValueError("the URL's gateway user or password is empty")
    if not username.isprintable():
        raise ValueError("the URL's gateway user has control characters")
    return Credentials(username, password)


def parse_url(text: str) -> Target:
    """powerflex://[USER:PASSWORD@]GATEWAY[:PORT][/STORAGEPOOL], CloudStack's form for a
    PowerFlex pool (ScaleIOPrimaryDataStoreLifeCycle.initialize: "should be
    powerflex://username:password@gatewayhost/pool"); ValueError naming the problem.

    No message ever quotes the URL: a password with an unencoded `#` or `/` makes any
    parser misplace where the userinfo ends, and it would be printed.
    """
    raw = text.strip()
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() != SCHEME:
        raise ValueError(f"not a PowerFlex URL; {_URL_FORM}")
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    end = min(ends) if ends else len(rest)
    authority, remainder = rest[:end], rest[end:]
    if remainder[:1] in ("?", "#"):
        raise ValueError(f"the URL has a query or fragment a PowerFlex URL has not ({_ENCODE_HINT})")
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _host_and_port(hostport)
    credentials = _credentials(userinfo) if at else None
    pool = unquote(remainder[1:])
    if not pool.isprintable():
        raise ValueError("the storage pool name has control characters")
    return Target(host, port, pool, credentials)


def _shown(url: str) -> str:
    """A URL that did not parse, for a result: everything up to the last `@` of its
    authority dropped, however the userinfo is (mis)spelt."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return url.strip().rpartition("@")[2]
    return f"{scheme}://{rest.rpartition('@')[2]}"


def parse_json_string(body: bytes, what: str, max_chars: int) -> str:
    """The gateway answers a login with the session token and /api/version with the
    version, each as a bare JSON string (`"3.6"`; ScaleIOGatewayClientImpl strips the
    quotes). Anything else, an HTML page above all, is not a gateway's answer."""
    if len(body) > max_chars + 2:
        raise ProbeError("bad-answer", f"{what} answered {len(body)} bytes where a short JSON string belongs")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProbeError("bad-answer", f"{what} did not answer a JSON string: {body[:60]!r}") from None
    if not isinstance(value, str) or not value.strip():
        raise ProbeError("bad-answer", f"{what} did not answer a JSON string: {body[:60]!r}")
    if not (value.isascii() and value.isprintable()):
        raise ProbeError("bad-answer", f"{what} answered a string with characters no gateway sends")
    return value


def parse_version(body: bytes) -> str:
    version = parse_json_string(body, "/api/version", MAX_VERSION_CHARS)
    if not re.match(r"^\d+(\.\d+)*", version):
        raise ProbeError("bad-answer", f"/api/version answered {version[:40]!r}, not a version")
    return version


def parse_token(body: bytes) -> str:
    token = parse_json_string(body, "/api/login", MAX_TOKEN_CHARS)
    if any(c.isspace() for c in token):
        raise ProbeError("bad-answer", "/api/login answered a string that is no session token")
    return token


def gateway_message(body: bytes) -> str:
    """The gateway's own words from an error answer: its error object
    `{"message", "httpStatusCode", "errorCode"}` (goscaleio types.Error), else the text."""
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        text = data["message"]
    return "".join(c if c.isprintable() else " " for c in text)[:200]


def _basic(username: str, secret: str) -> dict[str, str]:
    """HTTP basic auth: user:password for /api/login, user:token after it
    (ScaleIOGatewayClientImpl.authenticate and .get)."""
    encoded = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {encoded}"}


def _expect_200(answer: http.Answer, what: str) -> None:
    # ScaleIOGatewayClientImpl.authenticate takes only 200 as a login.
    if answer.status != 200:
        raise ProbeError("http-error", f"{what} answered HTTP {answer.status}: "
                         f"{gateway_message(answer.body)}", answer.status)


class _Progress:
    """What the gateway exchange is waiting for, so a timeout can say so."""

    def __init__(self) -> None:
        self.step = "GET /api/version"


async def _ask_gateway(
    api: http.Target, credentials: Optional[Credentials], context: ssl.SSLContext, progress: _Progress
) -> tuple[Part, dict[str, str]]:
    """The gateway's answer, and the session to log out of when one was opened."""
    if credentials is None:
        answer = await http.get(api, "/version", ssl_context=context)
        if answer.status in (401, 403):
            return Part("auth", f"answers and asks for credentials for /api/version (HTTP {answer.status}); "
                        "set [powerflex] credentials to probe it", http_status=answer.status), {}
        _expect_200(answer, "/api/version")
        version = parse_version(answer.body)
        return Part("healthy", f"API {version} answers (no credentials configured: login not tried)",
                    version=version), {}
    progress.step = "GET /api/login"
    answer = await http.get(api, "/login", _basic(credentials.username, credentials.password), context)
    if answer.status in (401, 403):
        return Part("auth", f"answers and refuses these credentials (user {credentials.username!r}: "
                    f"HTTP {answer.status} from /api/login)", http_status=answer.status), {}
    _expect_200(answer, "/api/login")
    session = _basic(credentials.username, parse_token(answer.body))
    progress.step = "GET /api/version"
    answer = await http.get(api, "/version", session, context)
    _expect_200(answer, "/api/version")
    version = parse_version(answer.body)
    return Part("healthy", f"API {version} answers; login as {credentials.username!r} accepted",
                version=version), session


def _gateway_error(exc: ProbeError) -> Part:
    if exc.status == "tls" and exc.detail.endswith(_PLAIN_TEXT_REASONS):
        return Part("bad-answer", f"answers in plain text, not TLS ({exc.detail}): another server "
                    "has the gateway's port, or the gateway serves no HTTPS")
    if exc.status == "tls":
        return Part("tls", f"{exc.detail}; {TLS_HINT}")
    return Part(exc.status, exc.detail, http_status=exc.http_status)


def _credentials_for(target: Target, config: PowerFlexConfig) -> tuple[Optional[Credentials], str]:
    """The credentials file's, else the URL's; with why the file cannot be used, if so."""
    if not config.credentials:
        return target.credentials, ""
    try:
        return load_credentials(config.credentials), ""
    except ValueError as exc:
        return None, str(exc)


async def _gateway_part(
    target: Target, credentials: Optional[Credentials], problem: str, config: PowerFlexConfig,
    deadline: float, timeout: float,
) -> Part:
    if problem:
        return Part("auth", f"not asked: {problem}")
    loop = asyncio.get_running_loop()
    try:
        context = ssl.create_default_context(cafile=config.ca or None)
    except (OSError, ssl.SSLError) as exc:
        return Part("tls", f"not asked: cannot load [powerflex] ca {config.ca}: {exc}")
    api = http.Target("https", target.host, target.port, API_BASE)
    progress = _Progress()
    try:
        part, session = await asyncio.wait_for(_ask_gateway(api, credentials, context, progress),
                                               deadline - loop.time())
    except asyncio.TimeoutError:
        return Part("timeout", f"no complete answer to {progress.step} within {timeout:g}s")
    except ProbeError as exc:
        return _gateway_error(exc)
    if session:
        # Every probe opens a session; ending it keeps a gateway asked by every host
        # every interval from piling them up. Its answer changes nothing.
        with contextlib.suppress(ProbeError, asyncio.TimeoutError):
            await asyncio.wait_for(http.get(api, "/logout", session, context), deadline - loop.time())
    return part


_DOWN = ("refused", "timeout", "dns", "tls")


def _rank(status: str) -> int:
    return 0 if status == "healthy" else 2 if status in _DOWN else 1


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """A gateway that echoed the password into an error must not put it in a result."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


async def probe(url: str, config: Config, timeout: float) -> ProbeResult:
    """The gateway the URL names and this host's SDC, asked at the same time, both within
    `timeout` seconds. Healthy when both are; otherwise the status of the worse half
    (an unreachable one before one that answers wrongly; the SDC first on a tie, since
    its failure is the one this host feels), and the detail tells both."""
    started = time.monotonic()
    try:
        target = parse_url(url)
    except ValueError as exc:
        return ProbeResult(NAME, _shown(url), "bad-answer", f"PowerFlex URL unusable: {exc}")
    credentials, problem = _credentials_for(target, config.powerflex)
    deadline = asyncio.get_running_loop().time() + timeout
    gateway, sdc = await asyncio.gather(
        _gateway_part(target, credentials, problem, config.powerflex, deadline, timeout),
        sdc_part(sdc_home(config), deadline, timeout))
    status = sdc.status if _rank(sdc.status) >= _rank(gateway.status) else gateway.status
    said = _scrub(gateway.detail, (credentials.password,) if credentials else ())
    detail = f"gateway {target.where}: {said}; SDC: {sdc.detail}"
    return ProbeResult(NAME, target.url, status, detail, time.monotonic() - started,
                       http_status=gateway.http_status, version=gateway.version,
                       node_status=sdc.node_status, local_ok=sdc.status == "healthy")


class PowerFlexBackend:
    """The gateway a PowerFlex pool was added through, and this host's SDC."""

    name: str = NAME
    schemes: tuple[str, ...] = (SCHEME,)

    def validate(self, url: str) -> None:
        parse_url(url)

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        """The management server lists a PowerFlex pool with the gateway host as its
        ipaddress and the PowerFlex storage pool's id as its path
        (ScaleIOPrimaryDataStoreLifeCycle.initialize: setHost(uri.getHost()),
        setPath(scaleIOPool.getId())); a gateway port other than 443 is not listed.
        The probe asks the gateway and this host's SDC, neither per pool, so the endpoint
        is the gateway alone: every pool behind one gateway is probed once (16 pools were
        16 gateway logins and 16 drv_cfg runs a round, slow enough to time out).
        PowerFlex pools are no libvirt pools, so libvirt's view has none."""
        if pool.type.lower() != "powerflex" or pool.origin != "management" or not pool.source_hosts:
            return None
        host = pool.source_hosts[0]
        url = usable(f"{SCHEME}://" + (f"[{host}]" if ":" in host else host), parse_url)
        return Endpoint(url, "management server") if url else None

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        return await probe(endpoint, config, timeout)


BACKEND = PowerFlexBackend()
