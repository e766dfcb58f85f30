"""What ``tools/fuzz.py`` and ``tools/crash.py`` share: a scratch database, a live ``shiyu serve``
subprocess, logging in, and merging figures into ``benchmarks/results.json``.

The scratch database is a SQLite file in a temporary directory or a fresh PostgreSQL database
next to ``--pg`` (created and dropped with ``shiyu.dbadmin``); it is migrated and seeded exactly
like ``shiyu db upgrade`` and loaded with the small demo city. The server is the real command,
``shiyu serve``, with the scheduler off, cheap password hashing (logins are not under test) and
its own ``SHIYU_VAR_DIR``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Cheap password hashing for the ~60 demo users loaded here and for the server, which inherits it.
os.environ.setdefault("SHIYU_ARGON2_TIME_COST", "1")
os.environ.setdefault("SHIYU_ARGON2_MEMORY_KIB", "8192")

ROOT = Path(__file__).resolve().parents[1]
try:
    import shiyu  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from shiyu.config import get_settings  # noqa: E402
from shiyu.dbadmin import create_database, drop_database, upgrade  # noqa: E402
from shiyu.demo.city import DEMO_PASSWORD  # noqa: E402
from shiyu.kit.db import Database  # noqa: E402
from shiyu.kit.figures import merge_json  # noqa: E402,F401 - re-exported for crash.py and fuzz.py

get_settings.cache_clear()

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent


def shiyu_command() -> list[str]:
    exe = BIN / "shiyu"
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from shiyu.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- database


@dataclass
class Scratch:
    """A scratch database and directory: ``kind`` is ``sqlite`` or ``postgres``."""

    kind: str
    pg: str = PG_DEFAULT
    keep: bool = False
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shiyu-tools-")))
    url: str = ""
    dbname: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.tmp / 'shiyu.db'}"
        elif self.kind == "postgres":
            self.dbname = f"shiyu_tools_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            self.url = create_database(self.pg, self.dbname)
        else:
            raise ValueError(f"unknown database kind {self.kind!r}")

    def prepare(self, *, history: bool) -> dict[str, Any]:
        """Migrate and seed (``shiyu db upgrade``), then load the small demo city; with ``history``
        also its work items and police calls (``shiyu demo load --size small``)."""
        from shiyu.demo.load import load_demo

        db = Database(self.url)
        try:
            t0 = time.perf_counter()
            upgrade(db)
            with db.unit_of_work() as session:
                rep = load_demo(session, "small", 1, history=history)
            return {"seconds": round(time.perf_counter() - t0, 1), "units": rep.units, "grids": rep.grids,
                    "users": rep.users, "items": rep.items, "calls": rep.calls}
        finally:
            db.engine.dispose()

    def env(self) -> dict[str, str]:
        """Environment for ``shiyu`` commands and the server on this database."""
        env = {**os.environ, "SHIYU_DATABASE_URL": self.url, "SHIYU_SCHEDULER": "false",
               "SHIYU_VAR_DIR": str(self.tmp / "var"), "PYTHONUNBUFFERED": "1"}
        return env

    def label(self) -> str:
        return "SQLite (WAL, synchronous=FULL)" if self.kind == "sqlite" else "PostgreSQL (synchronous_commit=on)"

    def cleanup(self) -> None:
        if self.keep:
            print(f"kept: {self.url} and {self.tmp}")
            return
        if self.dbname is not None:
            try:
                drop_database(self.pg, self.dbname)
            except Exception as exc:  # best effort: a leftover scratch database is harmless
                print(f"could not drop {self.dbname}: {exc}")
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def audit_verify(env: dict[str, str]) -> tuple[int, str]:
    """Run ``shiyu audit verify``: (exit code, last line of its output)."""
    proc = subprocess.run([*shiyu_command(), "audit", "verify"], env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    verdict = [ln for ln in lines if ln.startswith("audit chain")]
    return proc.returncode, (verdict or lines or [""])[-1]


# --------------------------------------------------------------------------- server

class Server:
    """``shiyu serve`` as a subprocess in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        log.write(f"\n=== start {self.starts + 1} at {dt.datetime.now(dt.UTC).isoformat()}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [*shiyu_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        self.starts += 1

    def wait_ready(self, timeout: float = 120.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"shiyu serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"shiyu serve not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the server's whole process group (our own child's), then reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def tracebacks(self) -> list[str]:
        """Every traceback the server logged, each with the log line before it (which names the
        request for unhandled errors: ``unhandled error on METHOD PATH``)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        out: list[str] = []
        i = 0
        while i < len(lines):
            if lines[i].startswith("Traceback"):
                start = max(0, i - 1)
                j = i + 1
                cont = (" ", "\t", "Traceback", "During handling", "The above exception", "+", "|")
                while j < len(lines) and (not lines[j] or lines[j].startswith(cont)):
                    j += 1
                out.append("\n".join(lines[start:j + 1]))
                i = j + 1
            else:
                i += 1
        return out


def login(base: str, username: str, *, totp_secret: str | None = None, password: str = DEMO_PASSWORD) -> str:
    form = {"username": username, "password": password}
    if totp_secret:
        import pyotp

        form["totp"] = pyotp.TOTP(totp_secret).now()
    r = httpx.post(base + "/api/v1/auth/token", data=form, timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"login of {username} failed: {r.status_code} {r.text[:500]}")
    return str(r.json()["access_token"])


# --------------------------------------------------------------------------- figures


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def pg_reachable(pg: str) -> bool:
    url = make_url(pg)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=2):
            return True
    except OSError:
        return False
