"""Fuzz the HTTP API with schemathesis against ``/openapi.json``, logged in, with jurisdiction checks.

Usage::

    python tools/fuzz.py [--db sqlite|postgres] [--examples 200] [--slow-examples N]
                         [--profiles dispatcher,admin] [--workers 1] [--seed N] [--json PATH] [--keep] [-v]

For each ``--db`` the script builds a scratch database (``shiyu db upgrade`` + ``shiyu demo load --size
small``, i.e. the small demo city with its history of work items), starts ``shiyu serve`` on a free port
(``SHIYU_SCHEDULER=false``) and runs ``schemathesis run <server>/openapi.json`` once per profile:

=========== ================================= ==================================== =======================
profile     fuzzed as (primary)               replayed as (sibling jurisdiction)   operations
=========== ================================= ==================================== =======================
dispatcher  ``dispatcher_320102001000`` (town) ``dispatcher_320102002000`` (town)  all
admin       ``admin`` (city, TOTP)            ``auditor_320102000000`` (district)  the ones a dispatcher
                                                                                   may not use (users,
                                                                                   audit, catalogues,
                                                                                   supervision, mediation)
=========== ================================= ==================================== =======================

All four phases (examples, coverage, fuzzing, stateful) run, with ``--examples`` cases per operation in
the fuzzing phase (``--slow-examples``, if given, for the three report renderers). Parameters
that name things (unit, grid and household codes, item, user and notification ids, months, category codes,
holidays) are drawn half the time from real values of both jurisdictions and the rest of the city, so that
requests reach the code behind the 404s. Checks on every response:

* built in: ``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance``,
  ``response_schema_conformance``;
* ``auth_required``: the same request with no token, a garbage token and a revoked token is 401 for every
  operation but ``POST /api/v1/auth/token`` and ``GET /healthz``;
* ``jurisdiction``: a 2xx response shows nothing outside the caller's jurisdiction (unit, grid, household and
  department codes, item numbers), and every request that got a 2xx is replayed with the sibling's token,
  whose response must show nothing outside the sibling's jurisdiction; a 2xx to the sibling for an object
  named in the path (item, user, notification, unit, grid, household) outside its jurisdiction, or a file
  (PDF, Excel) about a unit outside it, is a leak as well;
* ``pii_masked``: no unmasked resident ID or mobile number in any response but an explicit reveal.

The server log is searched for unhandled errors. A table per operation (cases, 2xx, sibling replays,
failures) and the failures by kind are printed; ``--json PATH`` merges the figures into that file under
``"fuzz"`` and the database's name. Exit status 1 on any failure.

The same file is the schemathesis hooks module (``SCHEMATHESIS_HOOKS``): loaded that way it registers the
checks and hooks above, configured by the JSON file named in ``SHIYU_FUZZ_CONTEXT``.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import io
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

#: Not behind a token (used only when the document declares no bearer security at all).
PUBLIC = frozenset({"POST /api/v1/auth/token", "GET /healthz"})
#: Revoke the token they are called with: each call gets a fresh one.
TOKEN_CONSUMING = frozenset({"POST /api/v1/auth/logout"})
#: Render documents (the slowest operations): ``--slow-examples`` in the fuzzing phase, when given.
SLOW_PATHS = ("/api/v1/analysis/report", "/api/v1/analysis/reports/{period}/{unit_code}", "/api/v1/analysis/hotspots")

TOWN_A, TOWN_B, DISTRICT = "320102001000", "320102002000", "320102000000"
PROFILES: dict[str, dict[str, Any]] = {
    "dispatcher": {"primary": f"dispatcher_{TOWN_A}", "sibling": f"dispatcher_{TOWN_B}", "include": None},
    "admin": {"primary": "admin", "sibling": f"auditor_{DISTRICT}",
              "include": r"^/api/v1/(users|audit|categories|sla-rules|holidays"
                         r"|items/\{item_id\}/(supervisions|mediation))"},
}
BUILTIN_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                  "response_schema_conformance")
CUSTOM_CHECKS = ("auth_required", "jurisdiction", "pii_masked")


# =========================================================================== orchestration


def _values(url: str) -> dict[str, list[Any]]:
    """Real values to draw parameters from: both towns, their district, another district, the city."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    out: dict[str, list[Any]] = {}
    try:
        with eng.connect() as c:
            def col(sql: str, **kw: Any) -> list[Any]:
                return [r[0] for r in c.execute(text(sql), kw)]

            def under(table: str, column: str, code: str, n: int, *, path: str = "scope_path") -> list[Any]:
                return col(f"SELECT {column} FROM {table} WHERE {path} LIKE :p ORDER BY {column} LIMIT {n}",
                           p=f"%/{code}/%")

            other_district = col("SELECT code FROM units WHERE kind = 'district' AND code <> :d ORDER BY code LIMIT 1",
                                 d=DISTRICT)[0]
            places = [TOWN_A, TOWN_B, other_district]
            units = [TOWN_A, TOWN_B, DISTRICT, other_district, "320100000000"]
            for code in places:
                units += col("SELECT code FROM units WHERE path LIKE :p AND kind IN ('town', 'village') AND code <> :c "
                             "ORDER BY code LIMIT 2", p=f"%/{code}/%", c=code)
                units += col("SELECT code FROM units WHERE path LIKE :p AND kind = 'department' ORDER BY code LIMIT 1",
                             p=f"%/{code}/%")
            out["unit"] = sorted(set(units))
            out["grid"] = [g for code in places for g in under("grids", "code", code, 2)]
            out["household"] = [h for code in places for h in under("household_groups", "code", code, 2)]
            out["item"] = [i for code, n in ((TOWN_A, 12), (TOWN_B, 6), (other_district, 6))
                           for i in under("work_items", "id", code, n)]
            out["user"] = col("SELECT id FROM users WHERE username IN (:a, :b, :c, :d, :e, 'admin', 'auditor_city')",
                              a=f"dispatcher_{TOWN_A}", b=f"dispatcher_{TOWN_B}", c=f"grid_{TOWN_A[:9]}001",
                              d=f"leader_{DISTRICT}", e=f"dispatcher_{other_district}")
            out["notification"] = [n for code in places for n in under("notifications", "id", code, 3)]
            months = col("SELECT DISTINCT substr(CAST(created_at AS TEXT), 1, 7) FROM work_items")
            out["period"] = sorted(m for m in months if re.fullmatch(r"\d{4}-\d{2}", m))[-4:]
            out["category"] = col("SELECT code FROM categories WHERE parent_code IS NOT NULL ORDER BY code LIMIT 6")
            out["day"] = [str(d)[:10] for d in col("SELECT day FROM holidays ORDER BY day LIMIT 3")]
            from shiyu.domains.items.rules import ACTIONS

            out["action"] = list(ACTIONS)
    finally:
        eng.dispose()
    return out


def _config_toml(path: Path, args: argparse.Namespace) -> None:
    lines = [
        f"workers = {args.workers}",
        "continue-on-failure = true",  # keep fuzzing an operation after its first failure
        "[generation]",
        f"max-examples = {args.examples}",
        'database = "none"',
        "[checks]",
        *[f"{name}.enabled = true" for name in (*BUILTIN_CHECKS, *CUSTOM_CHECKS)],
        *[f"{name}.enabled = false" for name in ("response_headers_conformance", "positive_data_acceptance",
                                                 "negative_data_rejection", "use_after_free",
                                                 "ensure_resource_availability", "missing_required_header",
                                                 "ignored_auth", "object_level_authorization",
                                                 "unsupported_method", "allow_header_conformance")],
    ]
    for slow in SLOW_PATHS:
        lines += ["[[operations]]", f'include-path = "{slow}"', f"generation.max-examples = {args.slow_examples}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_profile(name: str, scratch: harness.Scratch, server: harness.Server, values: dict[str, list[Any]],
                args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    prof = PROFILES[name]
    out = scratch.tmp / f"fuzz-{name}"
    out.mkdir(parents=True, exist_ok=True)
    eng = create_engine(scratch.url)
    try:
        with eng.connect() as c:
            def user(username: str) -> dict[str, Any]:
                row = c.execute(text("SELECT u.totp_secret, u.totp_enabled, u.role, g.jurisdiction_code, un.path "
                                     "FROM users u JOIN grants g ON g.user_id = u.id "
                                     "JOIN units un ON un.code = g.jurisdiction_code WHERE u.username = :u"),
                                {"u": username}).first()
                if row is None:
                    raise RuntimeError(f"no demo user {username}")
                secret = row[0] if (row[1] or row[2] == "admin") else None
                return {"username": username, "totp_secret": secret, "code": row[3], "path": row[4]}

            primary, sibling = user(prof["primary"]), user(prof["sibling"])
    finally:
        eng.dispose()
    primary["token"] = harness.login(server.base, primary["username"], totp_secret=primary["totp_secret"])
    sibling["token"] = harness.login(server.base, sibling["username"], totp_secret=sibling["totp_secret"])
    revoked = harness.login(server.base, sibling["username"], totp_secret=sibling["totp_secret"])
    import httpx

    httpx.post(server.base + "/api/v1/auth/logout", headers={"Authorization": f"Bearer {revoked}"}, timeout=30)
    ctx = {"base": server.base, "db_url": scratch.url, "profile": name, "primary": primary, "sibling": sibling,
           "revoked_token": revoked, "values": values, "stats": str(out / "stats.json"),
           "failures": str(out / "failures.jsonl")}
    # The leak check must be able to fail: what the primary sees below its own unit is foreign to the sibling.
    canary = httpx.get(f"{server.base}/api/v1/units/{primary['code']}/children", timeout=60,
                       headers={"Authorization": f"Bearer {primary['token']}"})
    jur = Jurisdiction.from_db(scratch.url)
    seen = jur.foreign_in_text(canary.text, sibling["path"])
    jur.engine.dispose()
    if canary.status_code != 200 or not seen:
        raise RuntimeError(f"leak check self-test failed: {canary.status_code}, foreign codes found: {seen}")
    ctx_path = out / "context.json"
    ctx_path.write_text(json.dumps(ctx, ensure_ascii=False), encoding="utf-8")
    config = out / "schemathesis.toml"
    _config_toml(config, args)
    cmd = [str(harness.BIN / "schemathesis"), "--config-file", str(config), "run", server.base + "/openapi.json",
           "--report", "json,junit", "--report-dir", str(out / "report"), "--no-color",
           "--request-timeout", "300", "--suppress-health-check", "all", "--warnings", "off"]
    if prof["include"]:
        cmd += ["--include-path-regex", prof["include"]]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(Path(__file__).resolve()), "SHIYU_FUZZ_CONTEXT": str(ctx_path)}
    print(f"\n== profile {name}: fuzzed as {primary['username']}, replayed as {sibling['username']}; "
          f"{args.examples} cases per operation in the fuzzing phase", flush=True)
    t0 = time.perf_counter()
    log = out / "schemathesis.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        for raw in proc.stdout:
            fh.write(raw)
            if args.verbose:
                sys.stdout.write(raw.decode(errors="replace"))
        proc.wait()
    seconds = time.perf_counter() - t0
    log_text = log.read_text(errors="replace")
    tail = log_text[log_text.rfind("SUMMARY") - 40:] if "SUMMARY" in log_text else log_text[-4000:]
    print(tail.rstrip(), flush=True)
    json_reports = sorted((out / "report").glob("json-*.json"))
    report = json.loads(json_reports[-1].read_text()) if json_reports else {}
    junit = sorted((out / "report").glob("junit-*.xml"))
    stats_path, failures_path = Path(ctx["stats"]), Path(ctx["failures"])
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    custom = [json.loads(ln) for ln in failures_path.read_text().splitlines()] if failures_path.exists() else []
    return {"profile": name, "primary": primary["username"], "sibling": sibling["username"],
            "exit_code": proc.returncode, "seconds": round(seconds, 1), "seed": report.get("seed"),
            "test_cases": report.get("test_cases"), "errors": report.get("errors", []),
            "failures": parse_junit(junit[-1]) if junit else [], "operations": stats.get("operations", {}),
            "custom_failures": custom, "log": str(log)}


def parse_junit(path: Path) -> list[dict[str, Any]]:
    """Schemathesis' unique failures: operation, failure codes and titles, status received, curl."""
    import xml.etree.ElementTree as ET

    out: list[dict[str, Any]] = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        for f in tc.findall("failure") + tc.findall("error"):
            if f.tag == "error":
                out.append({"operation": tc.get("name"), "kind": "error", "checks": [(f.text or "").split("\n")[0]],
                            "status": None, "curl": None, "text": (f.text or "")[:3000]})
                continue
            blocks = re.split(r"(?m)^\d+\. Test Case ID: ", f.text or "")
            for block in blocks[1:] if len(blocks) > 1 else blocks:
                checks = re.findall(r"(?m)^- (ST\d+|[A-Z]{2}\d+)? ?(.+)$", block)
                status = re.search(r"(?m)^\s*Received: (\d{3})$", block) or re.search(r"(?m)^\[(\d{3})\]", block)
                curl = re.search(r"(?m)^\s*(curl .+)$", block)
                titles = [f"{c} {t}".strip() for c, t in checks]
                code = int(status.group(1)) if status else None
                if any(t.startswith("ST101") or "Server error" in t for t in titles) or (code or 0) >= 500:
                    kind = "server_error"
                elif any("Custom check failed" in t for t in titles):
                    kind = "custom"
                else:
                    kind = "schema_violation"
                out.append({"operation": tc.get("name"), "kind": kind, "checks": titles, "status": code,
                            "curl": curl.group(1) if curl else None, "text": block.strip()[:3000]})
    return out


def _server_errors(server: harness.Server) -> list[str]:
    return [tb for tb in server.tracebacks() if "unhandled error on" in tb.splitlines()[0]]


def _error_kind(tb: str) -> str:
    """``METHOD PATH: ExceptionType: message`` of a logged unhandled error."""
    lines = [ln for ln in tb.splitlines() if ln.strip()]
    request = lines[0].split("unhandled error on ", 1)[-1].split("?")[0]
    last = next((ln for ln in reversed(lines) if not ln.startswith((" ", "\t"))), "")
    return f"{request}: {last[:200]}"


def verdict(results: list[dict[str, Any]], server_errors: list[str]) -> dict[str, int]:
    unique = Counter(f["kind"] for r in results for f in r["failures"])
    custom = Counter(f["check"] for r in results for f in r["custom_failures"])
    # The server log holds every unhandled error, also those of replays; schemathesis reports each once.
    return {"server_errors": max(unique["server_error"], len(server_errors)),
            "schema_violations": unique["schema_violation"],
            "auth_bypasses": custom["auth_required"],
            "cross_jurisdiction_leaks": custom["jurisdiction"],
            "unmasked_personal_data": custom["pii_masked"],
            "schemathesis_errors": unique["error"]}


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    print(f"{'operation':<66} {'profile':<10} {'cases':>6} {'fuzz':>5} {'2xx':>5} {'4xx':>5} {'5xx':>4} "
          f"{'sibling':>7} {'fail':>4}")
    for r in results:
        fails = Counter(f["operation"] for f in r["custom_failures"])
        fails.update(f["operation"] for f in r["failures"])
        for op in sorted(r["operations"], key=lambda o: (o.split()[1], o.split()[0])):
            s = r["operations"][op]
            print(f"{op:<66} {r['profile']:<10} {s['cases']:>6} {s['phases'].get('fuzzing', 0):>5} {s['2xx']:>5} "
                  f"{s['4xx']:>5} {s['5xx']:>4} {s['sibling_replays']:>7} {fails.get(op, 0):>4}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg", default=harness.PG_DEFAULT, help="PostgreSQL maintenance database URL")
    parser.add_argument("--examples", type=int, default=200, help="cases per operation in the fuzzing phase")
    parser.add_argument("--slow-examples", type=int, default=None,
                        help=f"the same for the report renderers {', '.join(SLOW_PATHS)} (default: --examples; "
                             "measured on 2026-12-07, 200 of them add no time to the whole run)")
    parser.add_argument("--profiles", default="dispatcher,admin", help=f"comma-separated, of {', '.join(PROFILES)}")
    parser.add_argument("--workers", type=int, default=1,
                        help="schemathesis workers (more than 1 trips a thread-safety bug in hypothesis' lambda "
                             "source cache on Python 3.11: 'AST constructor recursion depth mismatch')")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database, logs and reports")
    parser.add_argument("-v", "--verbose", action="store_true", help="stream schemathesis' output")
    args = parser.parse_args(argv)
    if args.slow_examples is None:
        args.slow_examples = args.examples
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        parser.error(f"unknown profiles {unknown}")
    started = dt.datetime.now(dt.UTC)
    t_all = time.perf_counter()
    scratch = harness.Scratch(args.db, pg=args.pg, keep=args.keep)
    server: harness.Server | None = None
    ok = False
    try:
        loaded = scratch.prepare(history=True)
        print(f"scratch database {scratch.label()}: {loaded}", flush=True)
        values = _values(scratch.url)
        server = harness.Server(scratch.env(), scratch.tmp / "server.log")
        server.start()
        server.wait_ready()
        results = [run_profile(p, scratch, server, values, args) for p in profiles]
        server.stop()
        errors = _server_errors(server)
        print_table(results)
        v = verdict(results, errors)
        print("\nfailures:")
        for r in results:
            for f in r["failures"]:
                print(f"  [{r['profile']}] {f['kind']}: {f['operation']} {f['status']} {'; '.join(f['checks'])}\n"
                      f"      {f['curl']}")
            shown: set[tuple[str, str]] = set()
            for f in r["custom_failures"]:
                key = (f["check"], f["operation"])
                if key not in shown:
                    shown.add(key)
                    print(f"  [{r['profile']}] {f['check']}: {f['operation']} {f['url']} {f.get('query') or ''} "
                          f"-> {f['message']}")
            for e in r["errors"]:
                print(f"  [{r['profile']}] schemathesis error: {json.dumps(e, ensure_ascii=False)[:600]}")
        kinds = Counter(_error_kind(tb) for tb in errors)
        for kind, n in kinds.items():
            print(f"  server log: {n} x {kind}")
        shown_kinds: set[str] = set()
        for tb in errors:
            if _error_kind(tb) not in shown_kinds:
                shown_kinds.add(_error_kind(tb))
                print("\n" + tb[-2500:])
        ops = [s for r in results for s in r["operations"].values()]
        fuzz_cases = [s["phases"].get("fuzzing", 0) for s in ops]
        total_seconds = round(time.perf_counter() - t_all, 1)
        print(f"\n{sum(s['cases'] for s in ops)} cases over {len(ops)} operations and profiles "
              f"(fuzzing phase: min {min(fuzz_cases, default=0)}, median "
              f"{sorted(fuzz_cases)[len(fuzz_cases) // 2] if fuzz_cases else 0} per operation); "
              f"{sum(s['sibling_replays'] for s in ops)} sibling replays; {total_seconds} s")
        print(f"verdict: {v}")
        ok = not any(v.values()) and all(r["exit_code"] == 0 for r in results)
        if args.json is not None:
            harness.merge_json(args.json, "fuzz", {args.db: {
                "date": started.isoformat(timespec="seconds"), "machine": harness.machine(),
                "database": scratch.label(), "data": loaded, "schemathesis": _st_version(),
                "examples": args.examples, "slow_examples": args.slow_examples, "workers": args.workers,
                "verdict": v, "passed": ok,
                "profiles": [{
                    "profile": r["profile"], "primary": r["primary"], "sibling": r["sibling"],
                    "seconds": r["seconds"], "seed": r["seed"], "test_cases": r["test_cases"],
                    "failures": [{k: f[k] for k in ("operation", "kind", "checks", "status", "curl")}
                                 for f in r["failures"]],
                    "custom_failures": r["custom_failures"][:50],
                    "operations": {op: {k: s.get(k, 0) for k in ("cases", "2xx", "4xx", "5xx", "sibling_replays",
                                                                 "refused_before_auth")}
                                   | {"phases": s["phases"]} for op, s in sorted(r["operations"].items())},
                } for r in results],
                "server_errors": dict(kinds), "server_tracebacks": [tb[-2000:] for tb in errors[:5]],
                "total_seconds": total_seconds,
            }}, merge_keys=True)
        print("PASS" if ok else "FAIL")
    finally:
        if server is not None:
            server.stop()
        scratch.cleanup()
    return 0 if ok else 1


def _st_version() -> str:
    try:
        from importlib.metadata import version

        return version("schemathesis")
    except Exception:
        return "?"


# =========================================================================== schemathesis hooks
# Everything below runs inside the schemathesis process, configured by SHIYU_FUZZ_CONTEXT.

UNIT_RE = re.compile(r"(?<![0-9])(\d{12})")
NUMBER_RE = re.compile(r"\b([A-Z]{2}\d{8}-[0-9A-F]{6,10})\b")
TEXTUAL = ("json", "text/", "html", "csv", "xml", "javascript")


class Jurisdiction:
    """What one principal may see: unit codes in its subtree or above it (``units``: code -> (path, kind,
    parent)), objects whose scope path lies in its subtree (looked up in the database, when there is one)."""

    def __init__(self, units: dict[str, tuple[str, str, str | None]], engine: Any = None) -> None:
        from sqlalchemy import text

        self.text = text
        self.units = units
        self.engine = engine
        self._scope_cache: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_db(cls, url: str) -> Jurisdiction:
        from sqlalchemy import create_engine, text

        engine = create_engine(url) if url.startswith("sqlite") else create_engine(url, pool_size=4, max_overflow=4)
        with engine.connect() as c:
            units = {code: (path, kind, parent) for code, path, kind, parent in
                     c.execute(text("SELECT code, path, kind, parent_code FROM units"))}
        return cls(units, engine)

    def unit_visible(self, code: str, path: str) -> bool:
        """Unknown codes are not markers; a department counts as its parent unit."""
        u = self.units.get(code)
        if u is None:
            return True
        upath, kind, parent = u
        if kind == "department" and parent:
            return self.unit_visible(parent, path)
        return upath.startswith(path) or path.startswith(upath)

    def scope_of(self, table: str, column: str, value: Any) -> str | None:
        if self.engine is None:
            return None
        key = (table, f"{column}={value}")
        with self._lock:
            if key in self._scope_cache:
                return self._scope_cache[key]
        with self.engine.connect() as c:
            row = c.execute(self.text(f"SELECT scope_path FROM {table} WHERE {column} = :v"), {"v": value}).first()
        scope = row[0] if row else None
        if scope is not None:
            with self._lock:
                self._scope_cache[key] = scope
        return scope

    def foreign_in_text(self, body: str, path: str) -> list[str]:
        """Codes and item numbers in ``body`` outside the jurisdiction at ``path``."""
        if path.strip("/").count("/") == 0:  # the whole city
            return []
        found: list[str] = []
        for code in dict.fromkeys(UNIT_RE.findall(body)):
            if not self.unit_visible(code, path):
                found.append(code)
        for number in dict.fromkeys(NUMBER_RE.findall(body)):
            scope = self.scope_of("work_items", "number", number)
            if scope is not None and not scope.startswith(path):
                found.append(number)
        return found

    def foreign_params(self, case: Any, path: str) -> list[str]:
        """Objects named in the path (or, for documents, the ``unit`` query) outside ``path``'s subtree."""
        out: list[str] = []
        tables = {"item_id": "work_items", "candidate_id": "work_items", "user_id": "users",
                  "notification_id": "notifications"}
        for name, value in (case.path_parameters or {}).items():
            if name in tables:
                try:
                    ident = int(value)
                except (TypeError, ValueError):
                    continue
                if not 1 <= ident <= 2**62:
                    continue
                scope = self.scope_of(tables[name], "id", ident)
                if scope is not None and not scope.startswith(path):
                    out.append(f"{name}={value}")
            elif isinstance(value, str):
                m = re.match(r"\d{12}", value)
                if m and not self.unit_visible(m.group(0), path):
                    out.append(f"{name}={value}")
        return out

    def foreign_query_unit(self, case: Any, path: str) -> list[str]:
        value = (case.query or {}).get("unit")
        if isinstance(value, str):
            m = re.match(r"\d{12}", value)
            if m and not self.unit_visible(m.group(0), path):
                return [f"unit={value}"]
        return []


_CTX: dict[str, Any] = {}
_JUR: Jurisdiction | None = None
_STATS: dict[str, dict[str, Any]] = defaultdict(lambda: {"cases": 0, "2xx": 0, "4xx": 0, "5xx": 0,
                                                          "sibling_replays": 0, "phases": Counter()})
_STATS_LOCK = threading.Lock()
_LOCAL = threading.local()


def _session() -> Any:
    import requests

    s = getattr(_LOCAL, "session", None)
    if s is None:
        s = _LOCAL.session = requests.Session()
    return s


def _op(case: Any) -> str:
    """The documented operation (the coverage phase also sends methods an operation does not have)."""
    return f"{case.operation.method.upper()} {case.operation.path}"


def _documented_method(case: Any) -> bool:
    return bool(case.method.upper() == case.operation.method.upper())


def _public(case: Any) -> bool:
    """Operations the document does not put behind the bearer token (all but two before it said so)."""
    op = _op(case)
    if _CTX.get("public") is not None:
        return op in _CTX["public"]
    return op in PUBLIC


def _refused_before_auth(r: Any) -> bool:
    """A body refused before the token is looked at, showing nothing about the resource: 400/422 for
    a body that cannot be parsed at all (FastAPI reads the body before any dependency), and 413 from
    the body-limit middleware, which stops reading an oversized body before anything else runs."""
    if r.status_code not in (400, 413, 422):
        return False
    try:
        body = r.json()
    except ValueError:
        return False
    errors = body.get("errors") or []
    if r.status_code == 400:
        return body.get("code") == "http_error"
    if r.status_code == 413:
        return body.get("code") == "payload_too_large"
    return bool(errors) and all(e.get("type") == "json_invalid" for e in errors)


def _header(response: Any, name: str) -> str:
    value = response.headers.get(name) or response.headers.get(name.lower()) or ""
    return value[0] if isinstance(value, list) and value else str(value or "")


def _text(content: bytes, content_type: str) -> str | None:
    """The body as text when it can hold codes: JSON, HTML, CSV; the sheets of an Excel file."""
    ct = content_type.lower()
    if any(t in ct for t in TEXTUAL):
        return content.decode("utf-8", errors="replace")
    if "spreadsheetml" in ct or content[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as z:
                return "\n".join(z.read(n).decode("utf-8", errors="replace") for n in z.namelist()
                                 if n.endswith(".xml"))
        except zipfile.BadZipFile:
            return None
    return None


def _fresh_token(who: dict[str, Any]) -> str:
    return harness.login(_CTX["base"], who["username"], totp_secret=who.get("totp_secret"))


def _send(response: Any, token: str | None) -> Any:
    req = response.request.copy()
    if token is None:
        req.headers.pop("Authorization", None)
    else:
        req.headers["Authorization"] = f"Bearer {token}"
    return _session().send(req, timeout=300, allow_redirects=False)


def _fail(check: str, case: Any, message: str, **extra: Any) -> None:
    entry = {"check": check, "operation": _op(case), "message": message, "url": case.formatted_path,
             "query": case.query, "at": dt.datetime.now(dt.UTC).isoformat(), **extra}
    with _STATS_LOCK:
        with open(_CTX["failures"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
    raise AssertionError(message)


def _dump_stats() -> None:
    with _STATS_LOCK:
        data = {"operations": {op: {**s, "phases": dict(s["phases"])} for op, s in _STATS.items()}}
    Path(_CTX["stats"]).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _count(case: Any, response: Any, phase: str | None) -> None:
    with _STATS_LOCK:
        s = _STATS[_op(case)]
        s["cases"] += 1
        if not _documented_method(case):
            s["phases"]["undocumented_method"] += 1
            return
        cls = response.status_code // 100
        if cls in (2, 4, 5):
            s[f"{cls}xx"] += 1
        s["phases"][phase or "?"] += 1
        if sum(x["cases"] for x in _STATS.values()) % 500 == 0:
            threading.Thread(target=_dump_stats, daemon=True).start()


def auth_required(ctx: Any, response: Any, case: Any) -> bool | None:
    """Protected operations answer 401 to no token, a garbage token and a revoked token."""
    _count(case, response, getattr(ctx, "phase", None))
    if _public(case) or not _documented_method(case):
        return None
    for label, token in (("no token", None), ("garbage token", secrets.token_urlsafe(32)),
                         ("revoked token", _CTX["revoked_token"])):
        r = _send(response, token)
        if r.status_code == 401:
            continue
        if _refused_before_auth(r):
            with _STATS_LOCK:
                _STATS[_op(case)]["refused_before_auth"] = \
                    _STATS[_op(case)].get("refused_before_auth", 0) + 1
            continue
        _fail("auth_required", case, f"{label}: {r.status_code} instead of 401", status=r.status_code,
              body=r.text[:500])
    return None


def jurisdiction(ctx: Any, response: Any, case: Any) -> bool | None:
    """Nothing outside the caller's jurisdiction; the sibling's replay sees nothing outside its own."""
    assert _JUR is not None
    op = _op(case)
    if _public(case) or not _documented_method(case) or not 200 <= response.status_code < 300:
        return None
    primary, sibling = _CTX["primary"], _CTX["sibling"]
    body = _text(response.content, _header(response, "content-type"))
    if body is not None:
        foreign = _JUR.foreign_in_text(body, primary["path"])
        if foreign:
            _fail("jurisdiction", case, f"{primary['username']} sees {foreign[:5]} outside {primary['code']}",
                  who=primary["username"], status=response.status_code)
    token = _fresh_token(sibling) if op in TOKEN_CONSUMING else sibling["token"]
    r = _send(response, token)
    with _STATS_LOCK:
        _STATS[op]["sibling_replays"] += 1
    if not 200 <= r.status_code < 300:
        return None
    problems = _JUR.foreign_params(case, sibling["path"])
    sbody = _text(r.content, r.headers.get("content-type", ""))
    if sbody is not None:
        problems += _JUR.foreign_in_text(sbody, sibling["path"])
    else:
        problems += _JUR.foreign_query_unit(case, sibling["path"])
    if problems:
        _fail("jurisdiction", case, f"sibling {sibling['username']} got {r.status_code} showing {problems[:5]} "
              f"outside {sibling['code']}", who=sibling["username"], status=r.status_code, body=r.text[:500])
    return None


def pii_masked(ctx: Any, response: Any, case: Any) -> bool | None:
    """No unmasked resident ID or mobile number outside an explicit reveal."""
    from shiyu.kit.pii import find_unmasked

    if "/reveal" in case.path:
        return None
    body = _text(response.content, _header(response, "content-type"))
    if body is None:
        return None
    found = find_unmasked(body)  # the scanner leaves the fraction digits of numbers alone
    if found:
        _fail("pii_masked", case, f"{len(found)} unmasked values in a {response.status_code} response",
              status=response.status_code)
    return None


def _semantic(kind: str) -> list[Any]:
    return list(_CTX["values"].get(kind) or [])


PATH_KINDS = {"item_id": "item", "candidate_id": "item", "user_id": "user", "notification_id": "notification",
              "unit_code": "unit", "period": "period", "day": "day", "action": "action"}
QUERY_KINDS = {"unit": "unit", "period": "period", "category": "category"}
BODY_KINDS = {"unit": "unit", "unit_code": "unit", "category": "category"}


def _code_kind(path: str) -> str:
    for prefix, kind in (("/api/v1/units/", "unit"), ("/api/v1/grids/", "grid"), ("/api/v1/households/", "household"),
                         ("/api/v1/categories/", "category")):
        if path.startswith(prefix):
            return kind
    return "unit"


def _mix(value: dict[str, Any], kinds: dict[str, str]) -> Any:
    """Half the time, replace each named parameter with a real value of its kind."""
    from hypothesis import strategies as st

    if not isinstance(value, dict):
        return st.just(value)
    choices = {k: _semantic(kinds[k]) for k in value if k in kinds}
    choices = {k: v for k, v in choices.items() if v}
    if not choices:
        return st.just(value)
    return st.fixed_dictionaries(
        {k: st.one_of(st.just(value[k]), st.sampled_from(v)) for k, v in choices.items()}
    ).map(lambda repl: {**value, **repl})


def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    path = context.operation.path if context.operation is not None else ""
    return _mix(path_parameters, {**PATH_KINDS, "code": _code_kind(path)})


def flatmap_query(context: Any, query: dict[str, Any]) -> Any:
    return _mix(query, QUERY_KINDS)


def flatmap_body(context: Any, body: Any) -> Any:
    from hypothesis import strategies as st

    path = context.operation.path if context.operation is not None else ""
    method = context.operation.method.upper() if context.operation is not None else ""
    if (method, path) == ("POST", "/api/v1/items"):
        # Half the time a well-formed hotline request 12345工单 located by unit, so that items get made.
        valid = st.builds(lambda unit, title: {"kind": "hotline", "title": title, "unit": unit, "source": "hotline",
                                               "description": "fuzz"},
                          st.sampled_from(_semantic("unit") or ["320102001000"]),
                          st.text(min_size=2, max_size=40).filter(lambda t: len(t.strip()) >= 2))
        return st.one_of(_mix(body, BODY_KINDS), valid)
    kinds = dict(BODY_KINDS)
    if path.startswith("/api/v1/items/{item_id}/actions"):
        kinds["departments"] = "department_lists"
    return _mix(body, kinds)


def map_body(context: Any, body: Any) -> Any:
    """Logins the fuzzer makes never use the harness' own accounts: five wrong passwords would lock them
    (schemathesis reuses usernames it has seen in responses)."""
    op = context.operation
    if op is not None and op.path == "/api/v1/auth/token" and isinstance(body, dict) \
            and body.get("username") in _CTX.get("own_usernames", ()):
        return {**body, "username": f"fuzz-{body['username']}"[:64]}
    return body


def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The primary's token on every request (a fresh one for operations that revoke it); half the
    requests that carry If-Match get the item's current ETag, so that state changes get through."""
    import random

    import requests

    op = _op(case)
    if _public(case):
        return
    token = _fresh_token(_CTX["primary"]) if op in TOKEN_CONSUMING else _CTX["primary"]["token"]
    if case.headers is None:
        case.headers = {}
    case.headers["Authorization"] = f"Bearer {token}"
    if op == "POST /api/v1/items" and "Idempotency-Key" not in case.headers and random.random() < 0.5:
        case.headers["Idempotency-Key"] = secrets.token_hex(8)
    item_id = (case.path_parameters or {}).get("item_id")
    if "If-Match" in case.headers and isinstance(item_id, int) and random.random() < 0.5:
        try:
            r = _session().get(f"{_CTX['base']}/api/v1/items/{item_id}", timeout=60,
                               headers={"Authorization": f"Bearer {token}"})
        except requests.RequestException:
            return
        if r.status_code == 200 and r.headers.get("ETag"):
            case.headers["If-Match"] = r.headers["ETag"]


def _public_operations(base: str) -> set[str] | None:
    """Operations without the bearer requirement, when the document declares one at all."""
    import httpx

    doc = httpx.get(base + "/openapi.json", timeout=60).json()
    if "bearer" not in doc.get("components", {}).get("securitySchemes", {}):
        return None
    return {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m, op in item.items()
            if isinstance(op, dict) and not op.get("security", doc.get("security"))}


def _install_hooks() -> None:
    global _JUR
    import schemathesis

    _CTX.update(json.loads(Path(os.environ["SHIYU_FUZZ_CONTEXT"]).read_text(encoding="utf-8")))
    units = _CTX["values"].get("unit", [])
    _CTX["values"]["department_lists"] = [[u] for u in units if "-" in u] + [[]]
    _JUR = Jurisdiction.from_db(_CTX["db_url"])
    _CTX["public"] = _public_operations(_CTX["base"])
    for fn in (auth_required, jurisdiction, pii_masked):
        schemathesis.check(fn)
    _CTX["own_usernames"] = {_CTX["primary"]["username"], _CTX["sibling"]["username"],
                             *(p[k] for p in PROFILES.values() for k in ("primary", "sibling"))}
    for fn in (flatmap_path_parameters, flatmap_query, flatmap_body, map_body, before_call):
        schemathesis.hook(fn)
    atexit.register(_dump_stats)


if __name__ == "_schemathesis_hooks":
    _install_hooks()
elif __name__ == "__main__":
    raise SystemExit(main())
