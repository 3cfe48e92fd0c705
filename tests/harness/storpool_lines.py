"""Lines as StorPoolStorageAdaptor.SP_LOG writes them to storpool-agent.log."""

from __future__ import annotations

import time


def sp_line(at: float, message: str) -> str:
    """SP_LOG's own stamp: SimpleDateFormat `yyyy-MM-dd HH:mm:ss,ms`, so the digits after
    the comma are the minute and second again."""
    local = time.localtime(at)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f",{local.tm_min}{local.tm_sec} {message}\n"


def create(at: float, uuid: str) -> str:
    return sp_line(at, f"StorPoolStorageAdaptor.createStoragePool: uuid={uuid}, host=10.1.1.1:0, "
                       "path=/dev/storpool, userInfo=null, type=StorPool")
