"""The analysis report through its three doors: the CLI (`shiyu report analysis`,
`shiyu analysis snapshot|warnings`), the API (`/api/v1/analysis/...`) and the workbench
page (`/analysis`)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from shiyu.demo.city import CITY_CODE, DEMO_PASSWORD, DemoCity
from shiyu.demo.items import load_history
from shiyu.demo.load import load_city
from shiyu.domains.reports.service import build_report
from shiyu.kit.db import Database
from shiyu.kit.timeutil import utcnow
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import Principal
from shiyu.platform.workflow.calendar import LOCAL_TZ
from test_cli import shiyu

TOWN = "320102001000"


def last_month() -> str:
    first = utcnow().astimezone(LOCAL_TZ).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


@pytest.fixture(scope="module")
def dbfile(tmp_path_factory: pytest.TempPathFactory, demo_city: DemoCity) -> Iterator[Path]:
    """A SQLite file (the CLI runs in a subprocess) with the small city and 14 months of items."""
    from shiyu.dbadmin import upgrade

    path = tmp_path_factory.mktemp("reportcli") / "shiyu.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    with db.unit_of_work() as s:
        load_city(s, demo_city)
    with db.unit_of_work() as s:
        load_history(s, demo_city, seed=3, total=1500, months=14)
    db.dispose()
    yield path


def test_cli_json_holds_the_report_figures(dbfile: Path) -> None:
    out = dbfile.parent / "r.json"
    r = shiyu(dbfile, "report", "analysis", "--unit", CITY_CODE, "--period", last_month(), "--format", "json",
              "--out", str(out))
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text(encoding="utf-8"))
    db = Database(f"sqlite:///{dbfile}")
    try:
        with db.unit_of_work(write=False) as s:
            want = build_report(s, Principal.system("t"), unit_code=CITY_CODE, period=last_month())
    finally:
        db.dispose()
    for key in ("streams", "kinds", "categories", "rates", "townships", "daily", "hotspots"):
        assert got[key] == want[key], key
    assert got["schema"] == "shiyu.report.analysis/1"
    assert sum(s["current"] for s in got["streams"]) > 0


def test_cli_pdf_one_audience_and_all(dbfile: Path) -> None:
    one, every = dbfile.parent / "police.pdf", dbfile.parent / "all.pdf"
    r1 = shiyu(dbfile, "report", "analysis", "--unit", CITY_CODE, "--period", last_month(), "--audience", "police",
               "--out", str(one), "--permutations", "99")
    assert r1.returncode == 0, r1.stderr
    r2 = shiyu(dbfile, "report", "analysis", "--unit", CITY_CODE, "--period", last_month(), "--out", str(every),
               "--permutations", "99")
    assert r2.returncode == 0, r2.stderr
    police = pypdf.PdfReader(one)
    text = "".join(p.extract_text() for p in police.pages)
    assert "报公安机关" in text and "环比" in text and "同比" in text and "\u25a1" not in text
    both = pypdf.PdfReader(every)
    all_text = "".join(p.extract_text() for p in both.pages)
    assert len(both.pages) > len(police.pages)
    for heading in ("报公安机关", "报党委、政府", "报政法委"):
        assert heading in all_text


def test_cli_snapshot_gives_the_same_report(dbfile: Path) -> None:
    snap, live, from_snap = dbfile.parent / "snap", dbfile.parent / "live.json", dbfile.parent / "snap.json"
    r = shiyu(dbfile, "analysis", "snapshot", "--out", str(snap))
    assert r.returncode == 0, r.stderr
    assert (snap / "work_items.parquet").exists() and (snap / "police_records.parquet").exists()
    for target, extra in ((live, ()), (from_snap, ("--snapshot", str(snap)))):
        r = shiyu(dbfile, "report", "analysis", "--unit", CITY_CODE, "--period", last_month(), "--format", "json",
                  "--out", str(target), "--permutations", "99", *extra)
        assert r.returncode == 0, r.stderr
    a, b = json.loads(live.read_text()), json.loads(from_snap.read_text())
    assert b["source"] == "parquet" and a["source"] == "database"
    for key in ("streams", "kinds", "categories", "rates", "townships", "daily", "hotspots"):
        assert a[key] == b[key], key


@pytest.mark.parametrize(("args", "needle"), [
    (("--period", "2026-13", "--unit", CITY_CODE), "period"),
    (("--period", "2999-01", "--unit", CITY_CODE), "period"),
    (("--period", "2026-10", "--unit", "999999999999"), "unit"),
    (("--period", "2026-10", "--unit", CITY_CODE, "--format", "docx"), "--format"),
    (("--period", "2026-10", "--unit", CITY_CODE, "--audience", "press"), "--audience"),
    (("--period", "2026-10", "--unit", CITY_CODE, "--snapshot", "/nonexistent/dir"), "snapshot"),
], ids=["month-13", "future", "unknown-unit", "format", "audience", "snapshot"])
def test_cli_bad_input_exits_2_and_writes_nothing(dbfile: Path, args: tuple[str, ...], needle: str) -> None:
    out = dbfile.parent / "bad.pdf"
    r = shiyu(dbfile, "report", "analysis", *args, "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_warnings_json(dbfile: Path) -> None:
    day = (utcnow().astimezone(LOCAL_TZ).date() - timedelta(days=1)).isoformat()
    r = shiyu(dbfile, "analysis", "warnings", "--unit", CITY_CODE, "--as-of", day, "--json")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["unit"] == CITY_CODE and isinstance(body["warnings"], list)
    for w in body["warnings"]:
        assert w["method"] and w["message_zh"] and w["kind"] in ("rising", "overdue_cluster")
    bad = shiyu(dbfile, "analysis", "warnings", "--unit", CITY_CODE, "--as-of", "2026-02-30")
    assert bad.returncode == 2 and "as-of" in bad.stderr


# --------------------------------------------------------------------------- API


def test_api_formats_and_audit(client: Any, login: Any, db: Any) -> None:
    h = login("leader_city")
    base = {"unit": TOWN, "period": last_month(), "permutations": 99}
    r = client.get("/api/v1/analysis/report", params=base, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit"]["code"] == TOWN and len(body["streams"]) == 4
    html = client.get("/api/v1/analysis/report", params={**base, "format": "html", "audience": "committee"},
                      headers=h)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert body["unit"]["name"] in html.text and "file://" not in html.text
    pdf = client.get("/api/v1/analysis/report", params={**base, "format": "pdf", "audience": "police"}, headers=h)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert body["unit"]["name"] in text and "报公安机关" in text
    xlsx = client.get("/api/v1/analysis/report", params={**base, "format": "xlsx"}, headers=h)
    assert xlsx.status_code == 200
    wb = load_workbook(io.BytesIO(xlsx.content), read_only=True)
    assert "乡镇排名" in wb.sheetnames and "比率" in wb.sheetnames
    rows = list(wb["四情"].iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == ["call", "case", "opinion", "social"]
    assert [r[1] for r in rows[1:]] == [s["current"] for s in body["streams"]]
    with db.unit_of_work(write=False) as s:
        formats = {e.detail.get("format") for e in s.execute(
            select(AuditEntry).where(AuditEntry.action == "analysis.report", AuditEntry.object_id == TOWN)).scalars()}
    assert {"json", "html", "pdf", "xlsx"} <= formats


def test_api_hotspots_and_warnings(client: Any, login: Any) -> None:
    h = login("leader_city")
    r = client.get("/api/v1/analysis/hotspots", params={"unit": TOWN, "period": last_month(), "permutations": 99},
                   headers=h)
    assert r.status_code == 200, r.text
    feats = r.json()["features"]
    assert feats and {"id", "z", "p_sim", "class"} <= set(feats[0])
    w = client.get("/api/v1/analysis/warnings", params={"unit": TOWN}, headers=h)
    assert w.status_code == 200 and isinstance(w.json()["warnings"], list)


# --------------------------------------------------------------------------- page


def test_analysis_page(client: Any, login: Any) -> None:
    client.cookies.clear()
    r = client.post("/login", data={"username": "leader_city", "password": DEMO_PASSWORD}, follow_redirects=False)
    assert r.status_code in (302, 303), r.text
    page = client.get("/analysis", params={"unit": TOWN, "period": last_month()})
    assert page.status_code == 200
    assert 'id="report-preview"' in page.text and "format=html" in page.text
    assert 'href="/analysis"' in page.text  # the menu entry
    bad = client.get("/analysis", params={"unit": "999999999999"})
    assert bad.status_code == 200 and 'role="alert"' in bad.text and "report-preview" not in bad.text
    client.cookies.clear()


def test_monthly_run_archives_once_and_notifies(dbfile: Path) -> None:
    period = last_month()
    first = shiyu(dbfile, "report", "monthly", "--period", period, "--levels", "1", "--permutations", "99")
    assert first.returncode == 0, first.stderr
    assert "1 reports written" in first.stdout
    pdf = dbfile.parent / "reports" / period / f"{CITY_CODE}.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.with_suffix(".json").exists()
    again = shiyu(dbfile, "report", "monthly", "--period", period, "--levels", "1")
    assert again.returncode == 0 and "0 reports written, 1 already there" in again.stdout
    db = Database(f"sqlite:///{dbfile}")
    try:
        with db.unit_of_work(write=False) as s:
            from shiyu.domains.items.models import Notification

            notes = s.execute(select(Notification).where(Notification.kind == "report")).scalars().all()
            assert [n.unit_code for n in notes] == [CITY_CODE] and period in notes[0].message
    finally:
        db.dispose()
    bad = shiyu(dbfile, "report", "monthly", "--levels", "1,x")
    assert bad.returncode == 2


def test_api_lists_and_serves_archived_reports(client: Any, login: Any) -> None:
    from shiyu.domains.reports.api import archive_root

    folder = archive_root() / "2025-12"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TOWN}.pdf").write_bytes(b"%PDF-1.7 archived")
    (folder / "320103001000.pdf").write_bytes(b"%PDF-1.7 elsewhere")
    h = login("dispatcher_320102001000")
    listed = client.get("/api/v1/analysis/reports", params={"unit": TOWN}, headers=h).json()["reports"]
    assert {"period": "2025-12", "unit": TOWN, "bytes": 17} in listed
    assert all(r["unit"].startswith("320102001") for r in listed)
    got = client.get(f"/api/v1/analysis/reports/2025-12/{TOWN}", headers=h)
    assert got.status_code == 200 and got.content == b"%PDF-1.7 archived"
    assert client.get("/api/v1/analysis/reports/2025-12/320103001000", headers=h).status_code == 404


def test_nul_characters_are_refused_not_a_500(client: Any, login: Any, db: Any) -> None:
    """PostgreSQL refuses NUL in text (a 422 naming it); SQLite stores it (the unit is unknown: 404)."""
    h = login("leader_city")
    r = client.get("/api/v1/analysis/reports", params={"unit": "\x00abc"}, headers=h)
    if db.sqlite:
        assert r.status_code == 404, r.text
    else:
        assert r.status_code == 422 and r.json()["code"] == "nul_character", r.text
