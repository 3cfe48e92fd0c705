"""URLs as the guard prints them: never with the credentials an operator wrote into
an endpoint or controller URL."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//|\s*)[^/?#]*@")


def without_userinfo(url: str) -> str:
    """The URL without a `user:password@` in its authority (scheme://host:port/path stay):
    an endpoint or controller URL written with credentials must not print them.

    Textual, so that it also works on what no URL parser accepts (a bare host:port, a bad
    port); like urlsplit, the authority ends at the first / ? or #, and the userinfo at
    its last @."""
    return _USERINFO.sub(r"\1", url, count=1)
