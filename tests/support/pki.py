"""A throwaway certificate authority for TLS tests, made with the openssl command line.

Tests need certificates that real TLS stacks accept with verification on (a CA, a server
certificate valid for 127.0.0.1 and localhost, a client certificate for mutual TLS);
checked-in certificates would expire, and generating them needs no Python package beyond
the `openssl` tool every target host has.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Union

_TIMEOUT = 30.0
_DAYS = "7"

_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = cloudstack-guard test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {common_name}
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
{extra}"""


def _openssl(openssl: str, *args: str) -> None:
    result = subprocess.run(
        [openssl, *args], capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _key(openssl: str, path: Path) -> None:
    # EC keys: generated in milliseconds, where RSA would slow every TLS test down.
    _openssl(openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path))
    path.chmod(0o600)


def _leaf(
    openssl: str, directory: Path, name: str, common_name: str, usage: str, extra: str
) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    config = directory / f"{name}.cnf"
    config.write_text(_LEAF_CONFIG.format(common_name=common_name, usage=usage, extra=extra))
    _key(openssl, key)
    _openssl(openssl, "req", "-new", "-config", str(config), "-key", str(key), "-out", str(csr))
    _openssl(
        openssl, "x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"),
        "-CAkey", str(directory / "ca.key"), "-set_serial", str(secrets.randbits(63)),
        "-days", _DAYS, "-sha256", "-extfile", str(config), "-extensions", "v3_leaf",
        "-out", str(cert),
    )
    return cert, key


def make_test_pki(directory: Union[str, Path]) -> dict[str, Path]:
    """Create a CA, a server pair (SAN IP 127.0.0.1, DNS localhost) and a client pair.

    Returns paths under the keys ca, server_cert, server_key, client_cert, client_key.
    Raises RuntimeError when openssl is missing or fails, with openssl's own message.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_config = directory / "ca.cnf"
    ca_config.write_text(_CA_CONFIG)
    _key(openssl, directory / "ca.key")
    _openssl(
        openssl, "req", "-x509", "-new", "-config", str(ca_config),
        "-key", str(directory / "ca.key"), "-days", _DAYS, "-sha256",
        "-out", str(directory / "ca.pem"),
    )
    server_cert, server_key = _leaf(
        openssl, directory, "server", "localhost", "serverAuth",
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    client_cert, client_key = _leaf(
        openssl, directory, "client", "cloudstack-guard test client", "clientAuth", ""
    )
    return {
        "ca": directory / "ca.pem",
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def server_cert(pki: dict[str, Path], name: str, san: str, days: str) -> Path:
    """A certificate for the test server's key, signed by the test CA: for another host,
    or already expired (x509 -days -1 ends its validity a day before it starts)."""
    directory = pki["ca"].parent
    ext, csr, cert = directory / f"{name}.ext", directory / f"{name}.csr", directory / f"{name}.pem"
    ext.write_text(f"[v3]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                   f"extendedKeyUsage = serverAuth\nsubjectAltName = {san}\n")
    steps = [("req", "-new", "-key", str(pki["server_key"]), "-subj", f"/CN={name}", "-out", str(csr)),
             ("x509", "-req", "-in", str(csr), "-CA", str(pki["ca"]), "-CAkey", str(directory / "ca.key"),
              "-set_serial", str(secrets.randbits(63)), "-days", days, "-sha256", "-extfile", str(ext),
              "-extensions", "v3", "-out", str(cert))]
    for step in steps:
        result = openssl(*step)
        if result.returncode != 0:
            raise RuntimeError(f"openssl {step[0]} failed: {result.stderr.strip()}")
    return cert
