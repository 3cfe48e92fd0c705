"""Stand-ins for StorPool's two host tools, written into a test's temp dir: `storpool`
(only `-j service list`, the HA heartbeat's command) and `storpool_confget` (KEY=VALUE
lines, as the agent reads them). StorPool's own tools are proprietary and not here.

Each is a small Python script run by this interpreter; at every run it reads what to do
from control.json beside it, so a test changes its behaviour between probes:

- storpool: ask the API as the real CLI does (`ask_api`: GET /ctrl/1.0/ServicesList with
  the token, print the API's JSON; a refusal goes to stderr with exit 1), print a given
  text (`answer`), fail (`fail`: stderr and an exit code), hang (`hang`), or be absent
  (`remove_cli`);
- storpool_confget: print given settings (`confget`), fail (`confget_fails`), or be
  absent (`remove_confget`).

Every run writes its pid to <tool>.pid, so a test can prove that a hung one was killed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

_CLI = r'''
import json, os, sys, time, urllib.error, urllib.request
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "storpool.pid"), "w") as out:
    out.write(str(os.getpid()))
if sys.argv[1:] != ["-j", "service", "list"]:
    sys.stderr.write("Error: this stand-in knows only `storpool -j service list`\n")
    sys.exit(2)
with open(os.path.join(here, "control.json")) as handle:
    todo = json.load(handle)["storpool"]
if todo["mode"] == "fail":
    sys.stderr.write(todo["message"] + "\n")
    sys.exit(todo["code"])
if todo["mode"] == "hang":
    time.sleep(todo["seconds"])
    sys.exit(0)
if todo["mode"] == "print":
    sys.stdout.write(todo["text"])
    sys.exit(0)
request = urllib.request.Request(
    "http://%s:%d/ctrl/1.0/ServicesList" % (todo["host"], todo["port"]),
    headers={"Authorization": "Storpool v1:" + todo["token"]})
try:
    with urllib.request.urlopen(request, timeout=todo["timeout"]) as answer:
        body = answer.read()
except urllib.error.HTTPError as exc:
    body = exc.read()
except OSError as exc:
    sys.stderr.write("Error: cannot connect to the API: %s\n" % (exc,))
    sys.exit(1)
try:
    doc = json.loads(body)
except ValueError:
    sys.stderr.write("Error: the API sent no JSON\n")
    sys.exit(1)
if "data" not in doc:
    sys.stderr.write("Error: %s\n" % (doc.get("error", {}).get("descr", "unknown error"),))
    sys.exit(1)
sys.stdout.write(json.dumps(doc, indent=2) + "\n")
'''

_CONFGET = r'''
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "storpool_confget.pid"), "w") as out:
    out.write(str(os.getpid()))
with open(os.path.join(here, "control.json")) as handle:
    todo = json.load(handle)["confget"]
if todo["mode"] == "fail":
    sys.stderr.write(todo["message"] + "\n")
    sys.exit(1)
sys.stdout.write(todo["text"])
'''


class StorPoolTools:
    """`storpool` and `storpool_confget` stand-ins in `directory`; cli and confget are
    their absolute paths, for StorPoolConfig(cli=..., confget=...)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.cli = str(directory / "storpool")
        self.confget_path = str(directory / "storpool_confget")
        self._control: dict[str, Any] = {
            "storpool": {"mode": "fail", "message": "Error: not set up by the test", "code": 1},
            "confget": {"mode": "print", "text": ""},
        }
        self._write_script(self.cli, _CLI)
        self._write_script(self.confget_path, _CONFGET)
        self._save()

    @staticmethod
    def _write_script(path: str, body: str) -> None:
        # -I: the test run's environment (PYTHONPATH, user site) does not reach the stand-in.
        Path(path).write_text(f"#!{sys.executable} -I\n{body}", encoding="utf-8")
        os.chmod(path, 0o700)

    def _save(self) -> None:
        scratch = self.directory / "control.json.new"
        scratch.write_text(json.dumps(self._control), encoding="utf-8")
        os.replace(scratch, self.directory / "control.json")

    def _set(self, tool: str, **todo: Any) -> None:
        self._control[tool] = todo
        self._save()

    def ask_api(self, host: str, port: int, token: str, timeout: float = 10.0) -> None:
        self._set("storpool", mode="api", host=host, port=port, token=token, timeout=timeout)

    def answer(self, text: str) -> None:
        self._set("storpool", mode="print", text=text)

    def answer_json(self, document: Any) -> None:
        self.answer(json.dumps(document, indent=2) + "\n")

    def fail(self, message: str, code: int = 1) -> None:
        self._set("storpool", mode="fail", message=message, code=code)

    def hang(self, seconds: float = 60.0) -> None:
        self._set("storpool", mode="hang", seconds=seconds)

    def remove_cli(self) -> None:
        Path(self.cli).unlink(missing_ok=True)

    def confget(self, values: dict[str, str]) -> None:
        self._set("confget", mode="print", text="".join(f"{k}={v}\n" for k, v in values.items()))

    def confget_fails(self, message: str = "storpool_confget: cannot read /etc/storpool.conf") -> None:
        self._set("confget", mode="fail", message=message)

    def remove_confget(self) -> None:
        Path(self.confget_path).unlink(missing_ok=True)

    def last_pid(self, tool: str = "storpool") -> Optional[int]:
        try:
            return int((self.directory / f"{tool}.pid").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
