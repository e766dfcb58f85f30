"""The ``shiyu`` command line (Typer). Every command runs as one unit of work with an
explicit principal (the system principal for administration), so CLI writes are
audited exactly like web writes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shiyu.config import get_settings
from shiyu.domains.open311.cli import open311_app
from shiyu.kit.db import Database, get_database
from shiyu.kit.errors import DomainError

app = typer.Typer(help="Shiyu 市域: municipal social governance platform.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema 数据库.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo city 演示城市.", no_args_is_help=True)
user_app = typer.Typer(help="Users 用户.", no_args_is_help=True)
geo_app = typer.Typer(help="Geography 地理: units, grids, location.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit log 审计日志.", no_args_is_help=True)
sla_app = typer.Typer(help="Deadlines 时限: the SLA tick.", no_args_is_help=True)
jobs_app = typer.Typer(help="Scheduled jobs 定时任务 of the server processes.", no_args_is_help=True)
analysis_app = typer.Typer(help="Analysis 分析: hot spots, early warnings, police calls, snapshots.",
                           no_args_is_help=True)
report_app = typer.Typer(help="Reports 报告: the periodic analysis report 一分析三报告.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(user_app, name="user")
app.add_typer(geo_app, name="geo")
app.add_typer(audit_app, name="audit")
app.add_typer(sla_app, name="sla")
app.add_typer(jobs_app, name="jobs")
app.add_typer(analysis_app, name="analysis")
app.add_typer(report_app, name="report")
app.add_typer(open311_app, name="open311")

console = Console(stderr=True)


def _db() -> Database:
    return get_database(get_settings().resolved_database_url())


def _ready_db() -> Database:
    """The database, refusing clearly when its schema was never created."""
    from shiyu.dbadmin import current

    db = _db()
    if current(db) is None:
        console.print("the database has no schema yet; run `shiyu db upgrade` first 数据库尚未初始化", markup=False)
        raise typer.Exit(2)
    return db


@contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        def step(label: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(label, total=total)
            return lambda n: progress.advance(task, n)

        yield step


def _fail(exc: DomainError, code: int = 1) -> None:
    # Messages quote user input (codes, names): print them as text, never as Rich markup.
    console.print("[red]error:[/red] " + escape(f"{exc.detail or exc.code}" + (f" (field: {exc.field})"
                                                                                 if exc.field else "")))
    for e in exc.errors[:50]:
        where = f"feature {e.get('index')}" if e.get("index") is not None else "file"
        console.print(escape(f"  {where}: {e.get('field', '')}: {e.get('reason') or e.get('message')}"))
    if len(exc.errors) > 50:
        console.print(f"  … and {len(exc.errors) - 50} more")
    raise typer.Exit(code)


# --------------------------------------------------------------------------- db

@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    from shiyu.dbadmin import current, upgrade
    db = _db()
    n_cat, n_rule, n_hol = upgrade(db)
    console.print(f"database at revision {current(db)} ({db.engine.url.render_as_string(hide_password=True)}); "
                  f"seeded {n_cat} categories, {n_rule} deadline rules, {n_hol} calendar days", markup=False)


# --------------------------------------------------------------------------- demo

@demo_app.command("load")
def demo_load(
    size: Annotated[str, typer.Option(help="small | medium")] = "small",
    seed: Annotated[int, typer.Option(help="random seed")] = 1,
) -> None:
    """Generate a synthetic city and load it (idempotent)."""
    from shiyu.dbadmin import upgrade
    from shiyu.demo.load import load_demo

    if size not in ("small", "medium"):
        console.print("[red]error:[/red] --size must be small or medium")
        raise typer.Exit(2)
    db = _db()
    upgrade(db)
    with _progress() as step:
        step("generate city 生成城市", 1)(0)
        try:
            with db.unit_of_work() as session:
                report = load_demo(session, size, seed, step=step)
        except DomainError as exc:
            _fail(exc)
    console.print(f"demo city loaded: {report}")


@demo_app.command("users")
def demo_users(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the demo accounts {username, password, role, unit_code}."""
    from shiyu.demo.city import DEMO_PASSWORD
    from shiyu.demo.load import demo_accounts

    with _ready_db().unit_of_work(write=False) as session:
        accounts = demo_accounts(session, DEMO_PASSWORD)
    if as_json:
        typer.echo(json.dumps(accounts, ensure_ascii=False, indent=2))
        return
    for a in accounts:
        typer.echo(f"{a['username']:<32} {a['role']:<20} {a['unit_code']}")


# --------------------------------------------------------------------------- serve

@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="port (env PORT)")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Serve the web UI and API."""
    import uvicorn

    from shiyu.dbadmin import upgrade

    upgrade(_db())
    uvicorn.run("shiyu.asgi:app", host=host, port=port, workers=workers, log_level="info")


# --------------------------------------------------------------------------- users

@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option(help="grid_worker|dispatcher|department_handler|mediator|leader|auditor|admin")],
    unit: Annotated[str, typer.Option(help="code of the unit or department the user belongs to")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    display_name: Annotated[str, typer.Option(help="shown name")] = "",
    phone: Annotated[str | None, typer.Option(help="mobile number")] = None,
) -> None:
    """Create a user bound to a unit, granted their role over that unit's jurisdiction."""
    from shiyu.platform.authz.principal import Principal
    from shiyu.platform.identity import service as identity
    from shiyu.platform.identity.passwords import totp_uri

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with _db().unit_of_work() as session:
            new = identity.create_user(session, Principal.system("cli"), username=username, password=password,
                                       role=role, unit_code=unit, display_name=display_name, phone=phone)
            uid = new.user.id
    except DomainError as exc:
        _fail(exc, 2)
    typer.echo(f"created user {username} (id {uid}, role {role}, unit {unit})")
    if new.totp_secret:
        typer.echo(f"TOTP secret (shown once): {new.totp_secret}")
        typer.echo(f"otpauth URI: {totp_uri(new.totp_secret, username)}")


# --------------------------------------------------------------------------- geo

@geo_app.command("import")
def geo_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    layer: Annotated[str, typer.Option(help="grid layer of the grids in the file")] = "unified",
) -> None:
    """Import a GeoJSON FeatureCollection of units and grids (all or nothing)."""
    from shiyu.domains.geo import service as geo
    from shiyu.platform.authz.principal import Principal

    try:
        data: Any = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        console.print("[red]error:[/red] " + escape(f"{file} is not valid JSON: {exc}"))
        raise typer.Exit(2) from exc
    total = len(data.get("features", [])) if isinstance(data, dict) and isinstance(data.get("features"), list) else 0
    try:
        with _progress() as step, _db().unit_of_work() as session:
            report = geo.import_geojson(session, Principal.system("cli"), data, layer=layer,
                                        progress=step("import 导入", total))
    except DomainError as exc:
        _fail(exc, 2)
    typer.echo(f"created {report.created}, updated {report.updated}, unchanged {report.unchanged} "
               f"of {report.features} features")


@geo_app.command("locate")
def geo_locate(
    lon: Annotated[float, typer.Option(help="longitude (WGS 84)")],
    lat: Annotated[float, typer.Option(help="latitude (WGS 84)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The grid containing a point and its chain of units up to the city. Exit 3 if none."""
    from shiyu.domains.geo import service as geo

    with _ready_db().unit_of_work(write=False) as session:
        found = geo.locate_point(session, lon, lat)
    if found is None:
        console.print(f"no grid contains the point ({lon}, {lat}) 该点不在任何网格内")
        raise typer.Exit(3)
    result, _path = found
    if as_json:
        typer.echo(json.dumps({"grid": result.grid, "chain": result.chain}, ensure_ascii=False))
    else:
        typer.echo(f"grid {result.grid} {result.grid_name}")
        typer.echo("chain " + " > ".join(result.chain))
        for layer, code in result.layers.items():
            typer.echo(f"layer {layer}: {code}")


# --------------------------------------------------------------------------- audit

@audit_app.command("verify")
def audit_verify() -> None:
    """Verify the audit hash chain. Exit 0 with the count when intact, 1 naming the first bad entry."""
    from shiyu.platform.audit import service as audit

    with _ready_db().unit_of_work(write=False) as session:
        total = audit.count(session)
        with Progress(TextColumn("verify 校验"), BarColumn(), MofNCompleteColumn(), console=console) as progress:
            task = progress.add_task("verify", total=total)
            result = audit.verify(session, progress=lambda n: progress.advance(task, n))
    if result.ok:
        typer.echo(f"audit chain intact: {result.checked} entries checked")
        return
    typer.echo(f"audit chain BROKEN at entry {result.bad_seq}: {result.reason} "
               f"({result.checked} entries verified before it)")
    raise typer.Exit(1)


# --------------------------------------------------------------------------- sla

@sla_app.command("tick")
def sla_tick(
    now: Annotated[str | None, typer.Option(help="ISO 8601 time to run as (default: now)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Mark items due soon and overdue, notify, and escalate overdue items one level up."""
    from datetime import datetime

    from shiyu.domains.items.tasks import sla_tick as tick
    from shiyu.kit.timeutil import utcnow

    if now:
        try:
            at = datetime.fromisoformat(now)
        except ValueError as exc:
            console.print(f"--now must be ISO 8601, e.g. 2026-11-29T09:00:00+08:00 ({exc})", markup=False)
            raise typer.Exit(2) from exc
        if at.tzinfo is None:
            console.print("--now needs a time zone, e.g. +08:00 or Z", markup=False)
            raise typer.Exit(2)
    else:
        at = utcnow()
    with _ready_db().unit_of_work() as session:
        report = tick(session, at)
    if as_json:
        typer.echo(report.model_dump_json())
        return
    typer.echo(f"{at.isoformat()}: due soon {len(report.due_soon)}, overdue {len(report.overdue)}, "
               f"escalated {len(report.escalated)}, supervision overdue {len(report.supervision_overdue)}")


# --------------------------------------------------------------------------- jobs

@jobs_app.command("status")
def jobs_status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The last run of each scheduled job (the servers run them; each run happens once
    among the server processes): status, start, end, the process that ran it, its error."""
    from rich.table import Table

    from shiyu.platform.jobs.scheduler import last_runs

    with _ready_db().unit_of_work(write=False) as session:
        runs = [{"name": r.name, "status": r.status, "started_at": r.started_at.isoformat(),
                 "finished_at": r.finished_at.isoformat() if r.finished_at else None, "holder": r.holder,
                 "error": r.error} for r in last_runs(session)]
    if as_json:
        typer.echo(json.dumps(runs, ensure_ascii=False))
        return
    if not runs:
        typer.echo("no job has run yet")
        return
    table = Table("job", "status", "started", "finished", "process", "error")
    for r in runs:
        table.add_row(*(escape(str(r[k] or "")) for k in ("name", "status", "started_at", "finished_at", "holder",
                                                        "error")))
    Console(width=max(Console().width, 160)).print(table)  # standard output, like the JSON


# --------------------------------------------------------------------------- analysis

@analysis_app.command("hotspots")
def analysis_hotspots(
    input_file: Annotated[Path | None, typer.Option("--input", help="GeoJSON FeatureCollection of polygons")] = None,
    value: Annotated[str | None, typer.Option(help="numeric property to analyse (with --input)")] = None,
    id_field: Annotated[str, typer.Option(help="property naming each feature (with --input)")] = "code",
    unit: Annotated[str | None, typer.Option(help="unit code: count items per unified grid in its subtree")] = None,
    period: Annotated[str | None, typer.Option(help="month YYYY-MM (with --unit)")] = None,
    category: Annotated[str | None, typer.Option(help="category code or prefix (with --unit)")] = None,
    permutations: Annotated[int, typer.Option(help="conditional permutations")] = 999,
    seed: Annotated[int, typer.Option(help="random seed of the permutation test")] = 12345,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Getis-Ord Gi* hot spots (queen contiguity, binary weights; hot/cold at 95%) of a polygon
    layer (--input FILE --value FIELD) or of item counts per grid (--unit CODE --period YYYY-MM)."""
    from shiyu.domains.analysis import hotspots as hs

    if (input_file is None) == (unit is None):
        console.print("give either --input FILE --value FIELD, or --unit CODE --period YYYY-MM", markup=False)
        raise typer.Exit(2)
    try:
        if input_file is not None:
            if not value:
                console.print("--input needs --value FIELD", markup=False)
                raise typer.Exit(2)
            try:
                data: Any = json.loads(input_file.read_text(encoding="utf-8"))
            except OSError as exc:
                console.print(f"cannot read {input_file}: {exc.strerror or exc}", markup=False)
                raise typer.Exit(2) from exc
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                console.print(f"{input_file} is not valid JSON: {exc}", markup=False)
                raise typer.Exit(2) from exc
            geoms, values, ids = hs.layer_from_geojson(data, value, id_field)
            results = hs.gi_star(geoms, values, ids, permutations=permutations, seed=seed)
        else:
            if not period:
                console.print("--unit needs --period YYYY-MM", markup=False)
                raise typer.Exit(2)
            from shiyu.platform.authz.principal import Principal

            with _ready_db().unit_of_work(write=False) as session:
                results = hs.grid_hotspots(session, Principal.system("cli"), unit_code=unit or "", period=period,
                                           category=category, permutations=permutations, seed=seed)
    except DomainError as exc:
        _fail(exc, 2)
    if as_json:
        typer.echo(json.dumps({"method": "getis-ord-gi*", "weights": "queen, binary", "permutations": permutations,
                               "seed": seed, "alpha": 0.05, "features": [r.as_dict() for r in results]},
                              ensure_ascii=False))
        return
    for r in results:
        typer.echo(f"{r.id}\t{r.value:g}\tz={r.z:.3f}\tp_sim={r.p_sim:.3f}\t{r.cls}" + ("\tisland" if r.island else ""))


@analysis_app.command("import-calls")
def analysis_import_calls(
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8 or GB18030) or Parquet file of police calls or cases")],
    mapping: Annotated[Path, typer.Option(help="TOML column mapping (docs/police-calls-import.md)")],
) -> None:
    """Import police calls 警情 or cases 案情. Bad rows are reported by line number, good rows kept.
    Exit 0 when a row was imported or all were already there, 1 when every row was bad, 2 on a
    bad mapping or file."""
    from shiyu.domains.analysis import calls
    from shiyu.platform.authz.principal import Principal

    try:
        parsed = calls.load_mapping(mapping)
    except DomainError as exc:
        _fail(exc, 2)
    db = _ready_db()
    try:
        with Progress(TextColumn("import 导入"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("import", total=None)
            with db.unit_of_work() as session:
                result = calls.import_calls(
                    session, Principal.system("cli"), file, parsed,
                    progress=lambda done, total: progress.update(task, completed=done, total=total))
    except DomainError as exc:
        _fail(exc, 2)
    typer.echo(f"imported {result.created}, duplicates skipped {result.duplicates_skipped}, "
               f"bad rows {len(result.bad_rows)} (batch {result.batch})")
    for line, reason in result.bad_rows[:50]:
        typer.echo(f"line {line}: {reason}")
    if len(result.bad_rows) > 50:
        typer.echo(f"… and {len(result.bad_rows) - 50} more bad rows")
    if result.bad_rows and result.created == 0 and result.duplicates_skipped == 0:
        raise typer.Exit(1)


@analysis_app.command("snapshot")
def analysis_snapshot(
    out: Annotated[Path, typer.Option(help="directory for the Parquet files")],
) -> None:
    """Write the analysis snapshot 分析快照 (work items and police records, analysis columns
    only, no personal data) as Parquet for `shiyu report analysis --snapshot DIR`."""
    from shiyu.domains.analysis.olap import export_parquet

    db = _ready_db()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks: dict[str, Any] = {}

        def tick(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        with db.unit_of_work(write=False) as session:
            counts = export_parquet(session, out, progress=tick)
    for name, n in counts.items():
        typer.echo(f"{out / name}: {n} rows")


@analysis_app.command("warnings")
def analysis_warnings(
    unit: Annotated[str, typer.Option(help="unit code: warnings for its children")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="day judged, YYYY-MM-DD (default: today)")] = None,
    raise_items: Annotated[bool, typer.Option("--raise", help="turn each warning into a work item 预警转工单")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Early warnings 预警: counts rising beyond history (Poisson, EWMA, CUSUM; the method is
    named) and clusters of overdue items, for the unit's children."""
    from datetime import date

    from shiyu.domains.analysis import warnings as ew
    from shiyu.domains.analysis.access import resolve_unit
    from shiyu.domains.reports.api import warning_moment
    from shiyu.domains.reports.service import warning_dict
    from shiyu.platform.authz.principal import Principal

    try:
        day = date.fromisoformat(as_of) if as_of else None
    except ValueError:
        console.print("--as-of must be a date YYYY-MM-DD", markup=False)
        raise typer.Exit(2) from None
    principal = Principal.system("cli")
    raised: list[dict[str, Any]] = []
    try:
        at = warning_moment(day)
        with _ready_db().unit_of_work(write=raise_items) as session:
            u = resolve_unit(session, principal, unit, object_type="warnings")
            if raise_items:
                from shiyu.domains.analysis.service import raise_warnings

                done = raise_warnings(session, principal, unit_code=u.code, as_of=at)
                found = [w for w, _item, _new in done]
                raised = [{"number": item.number, "id": item.id, "new": new} for _w, item, new in done]
            else:
                found = ew.all_warnings(session, principal, unit_code=u.code, as_of=at)
    except DomainError as exc:
        _fail(exc, 2)
    rows = [warning_dict(w) | ({"item": raised[i]} if raised else {}) for i, w in enumerate(found)]
    if as_json:
        typer.echo(json.dumps({"unit": unit, "as_of": at.isoformat(), "warnings": rows}, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no warnings 无预警")
    for r in rows:
        item = f"\t{r['item']['number']}{' (new)' if r['item']['new'] else ''}" if "item" in r else ""
        typer.echo(f"{r['kind']}\t{r['unit_code']}\t{r['method']}\t{r['message_zh']}{item}")


@analysis_app.command("divert")
def analysis_divert(
    record_id: Annotated[int, typer.Argument(help="id of a non-police call 非警务警情")],
    kind: Annotated[str, typer.Option(help="work item kind: hotline | event | dispute")] = "hotline",
) -> None:
    """Divert a non-police call into a work item 非警务警情分流."""
    from shiyu.domains.analysis.service import divert_call
    from shiyu.platform.authz.principal import Principal

    try:
        with _ready_db().unit_of_work() as session:
            item = divert_call(session, Principal.system("cli"), record_id, kind=kind)
            number, item_id = item.number, item.id
    except DomainError as exc:
        _fail(exc, 1)
    typer.echo(f"diverted call {record_id} into work item {number} (id {item_id})")


# --------------------------------------------------------------------------- report

AUDIENCES = ("police", "government", "committee")


@report_app.command("analysis")
def report_analysis(
    unit: Annotated[str, typer.Option(help="unit code 单位代码")],
    period: Annotated[str, typer.Option(help="month YYYY-MM")],
    out: Annotated[Path, typer.Option(help="file to write")],
    fmt: Annotated[str, typer.Option("--format", help="pdf | html | json | xlsx")] = "pdf",
    audience: Annotated[str, typer.Option(help="police | government | committee | all (one file, three parts)")]
    = "all",
    snapshot: Annotated[Path | None, typer.Option(help="read items and calls from this Parquet snapshot")] = None,
    permutations: Annotated[int, typer.Option(help="Gi* permutations")] = 999,
) -> None:
    """The periodic analysis report 一分析三报告 for a unit and a month. The JSON holds every
    figure the PDF prints."""
    from shiyu.domains.reports import service
    from shiyu.platform.authz.principal import Principal

    if fmt not in ("pdf", "html", "json", "xlsx"):
        console.print("--format must be pdf, html, json or xlsx", markup=False)
        raise typer.Exit(2)
    if audience not in (*AUDIENCES, "all"):
        console.print("--audience must be police, government, committee or all", markup=False)
        raise typer.Exit(2)
    if not 99 <= permutations <= 9999:
        console.print("--permutations must be between 99 and 9999", markup=False)
        raise typer.Exit(2)
    principal = Principal.system("cli")
    audiences = AUDIENCES if audience == "all" else (audience,)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("report 报告", total=2 if fmt in ("json", "xlsx") else 2 + len(audiences))
        try:
            with _ready_db().unit_of_work(write=False) as session:
                progress.update(task, description="figures 统计")
                report = service.build_report(session, principal, unit_code=unit, period=period,
                                              snapshot=snapshot, permutations=permutations)
                progress.advance(task)
                shapes = service.grid_shapes(session, principal, report) if fmt in ("pdf", "html") else {}
        except DomainError as exc:
            progress.stop()
            _fail(exc, 2)
        data: bytes
        if fmt == "json":
            data = json.dumps(report, ensure_ascii=False, indent=1).encode("utf-8")
        elif fmt == "xlsx":
            data = service.to_xlsx(report)
        else:
            from shiyu.domains.reports import render

            progress.update(task, description="render 排版")
            if fmt == "html":
                data = render.render_html_many(report, audiences=audiences, shapes=shapes).encode("utf-8")
            else:
                data = render.render_pdf_many(report, audiences=audiences, shapes=shapes,
                                              on_part=lambda: progress.advance(task))
        progress.update(task, description="write 写出")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
        progress.update(task, completed=progress.tasks[0].total)
    typer.echo(f"wrote {out} ({len(data):,} bytes; {', '.join(audiences) if fmt in ('pdf', 'html') else fmt})")


@report_app.command("monthly")
def report_monthly(
    period: Annotated[str | None, typer.Option(help="month YYYY-MM (default: last month)")] = None,
    levels: Annotated[str, typer.Option(help="unit levels, comma-separated: 1 city, 2 district, 3 township")]
    = "1,2,3",
    permutations: Annotated[int, typer.Option(help="Gi* permutations")] = 999,
) -> None:
    """Archive the month's report 月度报告 for every unit at the given levels under
    <var>/reports/ (what the server's scheduler does on its own each month). Idempotent."""
    from shiyu.domains.reports import tasks

    month = period or tasks.previous_month()
    try:
        wanted = tuple(int(x) for x in levels.split(","))
    except ValueError:
        wanted = ()
    if not wanted or any(v not in (1, 2, 3, 4) for v in wanted):
        console.print("--levels must list levels 1 to 4, e.g. 1,2,3", markup=False)
        raise typer.Exit(2)
    root = tasks.archive_root(Path(get_settings().var_dir))
    with Progress(TextColumn("monthly reports 月度报告"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("reports", total=None)
        try:
            with _ready_db().unit_of_work(write=False) as session:
                done = tasks.monthly_reports(
                    session, root, period=month, levels=wanted, permutations=permutations,
                    progress=lambda i, n: progress.update(task, completed=i, total=n))
        except DomainError as exc:
            progress.stop()
            _fail(exc, 2)
    made = sum(a.created for a in done)
    typer.echo(f"{month}: {made} reports written, {len(done) - made} already there, in {root / month}")


if __name__ == "__main__":
    app()
