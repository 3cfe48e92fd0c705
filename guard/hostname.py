"""Host names as getaddrinfo is given them.

Python hands a str host to getaddrinfo through the `idna` codec, whose first use imports
stringprep and unicodedata: about 20 ms of every `check`, for names that are nearly
always plain ASCII (or IP addresses). Bytes skip the codec; a name that needs IDNA keeps
its str and the codec.
"""

from __future__ import annotations

from typing import Union


def for_lookup(host: str) -> Union[str, bytes]:
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host
