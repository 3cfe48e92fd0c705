"""Credentials inside URLs are cut before a URL is shown anywhere."""

from __future__ import annotations

from guard.urls import without_userinfo


def test_without_userinfo():
    assert without_userinfo("https://user:pass@cs.example/client/api") == "https://cs.example/client/api"
    assert without_userinfo("https://u:p@ss@cs.example:8443/client/api") == "https://cs.example:8443/client/api"
    assert without_userinfo("u:p@ctl:3370") == "ctl:3370"
    assert without_userinfo("http://u:p@[::1]:3370/x") == "http://[::1]:3370/x"
    for clean in ("http://cs.example:8080/client/api", "http://h/p?x=a@b", "http://h?x=a@b", "ctl"):
        assert without_userinfo(clean) == clean
