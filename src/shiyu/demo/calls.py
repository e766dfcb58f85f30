"""Demo police calls and cases 演示警情案情: imported police records for a demo city.

``generate_calls(city, n=..., months=...)`` makes ``n`` plausible police records as one Arrow
table (vectorised with numpy: 10,000,000 rows in about 16 s); ``load_calls(session, city)``
writes them into ``police_records`` like an import would, so the analysis report 一分析三报告
has calls 警情 and cases 案情 next to the work items.

* Types: the 110 call types 110警情类别 (刑事 criminal: 盗窃, 诈骗, 抢劫抢夺, 故意伤害;
  治安 public order: 打架斗殴, 赌博, 吸贩毒, 扰乱秩序; 交通 traffic: 交通事故, 交通拥堵;
  求助/非警务 help and non-police: 噪音扰民, 水电气求助, 家庭纠纷, 邻里纠纷, 走失求助, flagged
  ``is_police=False`` 非警务警情) make about 85% of the records, registered cases 案情
  (盗窃案, 诈骗案, 故意伤害案, 抢劫案, 毒品案, 赌博案, 寻衅滋事案, 交通肇事案) the other 15%.
* Time: the ``months`` months ending at ``now``; per type a yearly cycle (fights and noise in
  summer, burglary and gambling before the Spring Festival 春节, accidents in the plum rains
  and winter), a weekly cycle (more fights and noise at weekends, fewer jams), a slow trend
  (telecom fraud 电信诈骗 rising, street crime falling) and an hour-of-day profile in local
  time (fights, robbery, drugs and noise at night, fraud and help requests in the day,
  accidents and jams at the rush hours).
* Space: every record lies at a random point inside one unified grid 全科网格 (so its
  ``grid_code`` is right) with the grid's village as ``unit_code`` and that village's path as
  ``scope_path``. Grids carry a gamma-distributed rate (a few carry much more), urban
  communities 社区 more than villages 村 for street crime, a handful of steady hot spots
  常态热点 several times the rest, and two or three emerging hot spots 新发热点 that start
  60-90 days before ``now`` in one grid and its neighbours (Gi* and the forecast find them).

Deterministic for ``(city, n, months, seed, now)``. No personal data: a record is a type,
a time and a place.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from shiyu.demo.city import DemoCity
from shiyu.demo.items import _BulkInsert, _Geo, _profiles
from shiyu.domains.analysis.models import PoliceRecord
from shiyu.domains.analysis.olap import CALL_SCHEMA
from shiyu.kit import meta
from shiyu.kit.timeutil import as_utc, iso, utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.principal import Principal

__all__ = ["BATCH", "CALL_SIZES", "CALL_TYPES", "COLUMNS", "META_KEY", "SOURCES", "CallType", "generate_calls",
           "load_calls"]

Step = Callable[[str, int], Callable[[int], None]]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: ``batch`` of every demo record: the load is skipped when one is present.
BATCH: Final = "demo"
META_KEY: Final = "demo_calls"
#: size -> (records, months): 25 months in the small city so the same month a year earlier
#: (同比) has data; 36 in the medium one.
CALL_SIZES: Final = {"small": (20_000, 25), "medium": (400_000, 36)}
#: Source system 来源系统 per stream.
SOURCES: Final = {"call": "demo-110", "case": "demo-cases"}
#: Columns of ``generate_calls``: the snapshot's ``CALL_SCHEMA`` and the rest of a record.
COLUMNS: Final = (*CALL_SCHEMA.names, *(c for c in ("source_id", "source", "lon", "lat", "unit_code")
                                         if c not in CALL_SCHEMA.names))
CHUNK: Final = 5_000

_DAY: Final = 86_400
_LOCAL_OFFSET: Final = 8 * 3600  # Asia/Shanghai has had no DST since 1991
_CASE_SHARE: Final = 0.15


@dataclass(frozen=True)
class CallType:
    """A police call type 警情类别 or case type 案件类别 with its demo pattern."""

    stream: str  # "call" 警情 | "case" 案情
    code: str
    name: str
    group: str  # 刑事 | 治安 | 交通 | 求助 (calls), 刑事案件 | 治安案件 (cases)
    is_police: bool  # False: a non-police call 非警务警情
    weight: float  # relative volume within its stream
    season: str  # a day profile of ``demo.items._profiles``
    hours: str  # a key of ``_HOURS``
    weekend: float  # volume on Saturdays and Sundays relative to weekdays
    trend: float  # growth per year
    urban: bool  # concentrated in urban communities 社区 (street crime) rather than spread evenly


CALL_TYPES: Final[tuple[CallType, ...]] = (
    # 刑事警情 criminal
    CallType("call", "JQ-01-01", "盗窃", "刑事", True, 14, "summer", "theft", 1.05, -0.06, True),
    CallType("call", "JQ-01-02", "诈骗", "刑事", True, 9, "prefestival", "day", 0.8, 0.15, False),
    CallType("call", "JQ-01-03", "抢劫抢夺", "刑事", True, 1.2, "winter", "night", 1.1, -0.10, True),
    CallType("call", "JQ-01-04", "故意伤害", "刑事", True, 2, "summer", "night", 1.3, -0.04, True),
    # 治安警情 public order
    CallType("call", "JQ-02-01", "打架斗殴", "治安", True, 8, "summer", "night", 1.4, -0.03, True),
    CallType("call", "JQ-02-02", "赌博", "治安", True, 2, "prefestival", "evening", 1.3, -0.05, False),
    CallType("call", "JQ-02-03", "吸贩毒", "治安", True, 0.8, "flat", "night", 1.2, -0.08, True),
    CallType("call", "JQ-02-04", "扰乱秩序", "治安", True, 3, "festival", "evening", 1.2, 0.0, True),
    # 交通警情 traffic
    CallType("call", "JQ-03-01", "交通事故", "交通", True, 14, "rain", "commute", 0.85, 0.02, True),
    CallType("call", "JQ-03-02", "交通拥堵", "交通", True, 5, "festival", "commute", 0.6, 0.03, True),
    # 求助/非警务 help and non-police calls 非警务警情
    CallType("call", "JQ-04-01", "噪音扰民", "求助", False, 8, "summer_strong", "noise", 1.5, 0.05, True),
    CallType("call", "JQ-04-02", "水电气求助", "求助", False, 4, "winter", "day", 1.0, 0.02, False),
    CallType("call", "JQ-04-03", "家庭纠纷", "求助", False, 7, "festival", "evening", 1.25, 0.0, False),
    CallType("call", "JQ-04-04", "邻里纠纷", "求助", False, 6, "summer", "evening", 1.2, 0.0, False),
    CallType("call", "JQ-04-05", "走失求助", "求助", False, 1.5, "festival", "day", 1.3, 0.0, False),
    # 案情 registered cases
    CallType("case", "AJ-01", "盗窃案", "刑事案件", True, 40, "summer", "theft", 1.05, -0.06, True),
    CallType("case", "AJ-02", "诈骗案", "刑事案件", True, 25, "prefestival", "day", 0.8, 0.15, False),
    CallType("case", "AJ-03", "故意伤害案", "刑事案件", True, 8, "summer", "night", 1.3, -0.04, True),
    CallType("case", "AJ-04", "抢劫案", "刑事案件", True, 3, "winter", "night", 1.1, -0.10, True),
    CallType("case", "AJ-05", "毒品案", "刑事案件", True, 4, "flat", "night", 1.1, -0.08, True),
    CallType("case", "AJ-06", "赌博案", "治安案件", True, 5, "prefestival", "evening", 1.3, -0.05, False),
    CallType("case", "AJ-07", "寻衅滋事案", "治安案件", True, 6, "summer", "night", 1.4, -0.03, True),
    CallType("case", "AJ-08", "交通肇事案", "刑事案件", True, 4, "rain", "commute", 0.85, 0.0, True),
)

# Local hour-of-day weights, 0h..23h.
_HOURS: Final[dict[str, tuple[float, ...]]] = {
    "night": (2.2, 1.8, 1.3, .8, .5, .3, .3, .4, .5, .6, .7, .8, .9, .9, .9, 1, 1.1, 1.3, 1.6, 2, 2.4, 2.7, 2.8, 2.6),
    "evening": (.8, .5, .3, .2, .15, .15, .3, .6, .9, 1, 1.1, 1.2, 1.3, 1.1, 1, 1.1, 1.3, 1.7, 2.2, 2.6, 2.7, 2.4,
                1.8, 1.2),
    "day": (.15, .1, .08, .06, .06, .1, .3, .7, 1.4, 1.9, 2.1, 2, 1.5, 1.4, 1.8, 2, 1.9, 1.6, 1.2, 1, .9, .7, .45,
            .25),
    "commute": (.3, .2, .15, .12, .15, .3, .9, 2.4, 2.8, 1.6, 1.1, 1.1, 1.2, 1.1, 1.1, 1.3, 1.7, 2.6, 2.9, 1.8, 1.2,
                .9, .6, .4),
    "theft": (.9, .8, .7, .6, .5, .4, .5, .7, 1, 1.2, 1.3, 1.3, 1.2, 1.2, 1.3, 1.3, 1.4, 1.5, 1.6, 1.6, 1.5, 1.4,
              1.2, 1),
    "noise": (2.4, 1.6, .8, .3, .15, .1, .15, .3, .4, .5, .5, .5, .6, .5, .4, .4, .4, .5, .8, 1.2, 1.8, 2.6, 3.2,
              3),
}
# Emerging hot spots 新发热点: (name suffix, [(type code, share)]).
_EMERGING: Final = (
    ("新开酒吧街", (("JQ-02-01", 0.45), ("JQ-04-01", 0.3), ("JQ-02-04", 0.15), ("AJ-07", 0.1))),
    ("电动车集中停放点", (("JQ-01-01", 0.7), ("AJ-01", 0.3))),
    ("出租屋聚集区", (("JQ-02-02", 0.35), ("JQ-02-03", 0.2), ("AJ-06", 0.25), ("AJ-05", 0.2))),
)


@dataclass(frozen=True)
class _Emerging:
    grid: int
    neighbours: list[int]
    start_day: int
    name: str
    types: tuple[tuple[int, float], ...]
    count: int


def _period(now: datetime, months: int) -> tuple[list[date], int]:
    """Local dates from the day after the same day ``months`` earlier to today, and the
    first day's local midnight as epoch seconds."""
    today = (now + timedelta(seconds=_LOCAL_OFFSET)).date()
    y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
    first = date(y, m + 1, min(today.day, calendar.monthrange(y, m + 1)[1])) + timedelta(days=1)
    days = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    day0_t = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) - _LOCAL_OFFSET
    return days, day0_t


def _village_paths(city: DemoCity) -> dict[str, str]:
    parent = {u.code: u.parent_code for u in city.units}
    out = {}
    for u in city.units:
        if u.kind != "village":
            continue
        chain: list[str] = []
        code: str | None = u.code
        while code is not None:
            chain.append(code)
            code = parent.get(code)
        out[u.code] = "/" + "/".join(reversed(chain)) + "/"
    return out


def _grid_weights(geo: _Geo, villages: list[str], rng: np.random.Generator, n_steady: int
                  ) -> tuple[FloatArray, FloatArray]:
    """Per-grid rates (urban street crime, everything else): gamma-distributed, higher in the
    core and in communities, times a few steady hot spots."""
    g = len(villages)
    urban = np.array([int(v[9:12]) < 200 for v in villages])
    xs, ys = geo.cx, geo.cy
    cx, cy = float(np.mean(xs)), float(np.mean(ys))
    reach = 0.35 * max(float(xs.max() - xs.min()), float(ys.max() - ys.min()), 1e-6)
    core = 0.6 + 0.8 * np.exp(-(((xs - cx) ** 2 + (ys - cy) ** 2) / reach**2))
    base = rng.gamma(0.9, 1.0, g) + 0.05
    hot = np.ones(g)
    pool = np.flatnonzero(urban) if urban.any() else np.arange(g)
    steady = rng.choice(pool, size=min(n_steady, len(pool)), replace=False)
    hot[steady] = rng.uniform(4.0, 8.0, len(steady))
    street = base * hot * core * np.where(urban, 1.0, 0.4)
    other = base * np.sqrt(hot) * np.where(urban, 1.0, 0.8)
    return street / street.sum(), other / other.sum()


def _emerging(geo: _Geo, villages: list[str], names: dict[str, str], rng: np.random.Generator, n: int,
              n_days: int, code_index: dict[str, int]) -> list[_Emerging]:
    """Two (small) or three emerging hot spots, each about 12x a grid's usual daily volume
    from its start, away from each other, in urban grids near the core."""
    g = len(villages)
    k = 2 if g < 1000 else 3
    urban = [i for i, v in enumerate(villages) if int(v[9:12]) < 200] or list(range(g))
    cx, cy = float(np.mean(geo.cx)), float(np.mean(geo.cy))
    pool = sorted(urban, key=lambda i: (geo.cx[i] - cx) ** 2 + (geo.cy[i] - cy) ** 2)
    pool = pool[: max(len(pool) * 2 // 3, 4 * k)]
    per_grid_day = n / max(g, 1) / max(n_days, 1)
    taken: set[int] = set()
    out: list[_Emerging] = []
    order = rng.permutation(len(pool))
    for j in order:
        if len(out) == k:
            break
        grid = pool[int(j)]
        if grid in taken:
            continue
        nb = geo.neighbours(grid)
        taken.update([grid, *nb])
        start = max(0, n_days - int(rng.integers(60, 91)))
        active = n_days - start
        suffix, mix = _EMERGING[len(out) % len(_EMERGING)]
        count = max(40, int(round(12 * per_grid_day * active)))
        village = names[villages[grid]]
        stem = village[:-2] if village.endswith("社区") else village[:-1]
        out.append(_Emerging(grid, nb, start, stem + suffix, tuple((code_index[c], w) for c, w in mix), count))
    return out


def generate_calls(city: DemoCity, *, n: int, months: int, seed: int = 1, now: datetime | None = None
                   ) -> pa.Table:
    """``n`` demo police records 演示警情案情 over the ``months`` months ending at ``now``
    (default: the current time), sorted by ``occurred_at``.

    Columns (``COLUMNS``): ``stream, category, category_name, is_police, scope_path, grid_code,
    occurred_at`` (naive UTC, as ``olap.CALL_SCHEMA``), then ``source_id, source, lon, lat,
    unit_code`` (the village 社区/村). Deterministic for ``(city, n, months, seed, now)``.
    """
    if n < 0 or months < 1:
        raise ValueError("n must be >= 0 and months >= 1")
    now_t = int(as_utc(now or utcnow()).timestamp())
    rng = np.random.default_rng([seed, 0x110])
    geo = _Geo(city)
    villages = [gr.village_code for gr in geo.grids]
    paths = _village_paths(city)
    names = {u.code: u.name for u in city.units}
    days, day0_t = _period(datetime.fromtimestamp(now_t, UTC), months)
    n_days = len(days)
    types = CALL_TYPES
    code_index = {t.code: i for i, t in enumerate(types)}

    # -- volume per (day, type): stream share x type weight x season x weekday x trend
    profiles = _profiles(days)
    weekend = np.array([d.weekday() >= 5 for d in days])
    years = np.arange(n_days) / 365.25
    stream_w = {"call": 1 - _CASE_SHARE, "case": _CASE_SHARE}
    totals = {s: sum(t.weight for t in types if t.stream == s) for s in stream_w}
    cols = []
    for t in types:
        col = profiles[t.season] * np.where(weekend, t.weekend, 1.0) * np.maximum(0.2, 1 + t.trend * years)
        cols.append(stream_w[t.stream] * t.weight / totals[t.stream] * col / col.mean())
    mat = np.stack(cols, axis=1)  # (days, types)

    street_w, other_w = _grid_weights(geo, villages, rng, max(3, len(villages) // 60))
    spots = _emerging(geo, villages, names, rng, n, n_days, code_index) if n and villages else []
    n_spots = min(n, sum(s.count for s in spots))
    n_base = n - n_spots

    counts = rng.multinomial(n_base, (mat / mat.sum()).ravel())
    day, typ = np.divmod(np.repeat(np.arange(mat.size, dtype=np.int64), counts), len(types))
    urban_t = np.array([t.urban for t in types])
    grid = np.empty(n_base, dtype=np.int64)
    is_street = urban_t[typ]
    grid[is_street] = rng.choice(len(villages), size=int(is_street.sum()), p=street_w)
    grid[~is_street] = rng.choice(len(villages), size=int((~is_street).sum()), p=other_w)

    # -- emerging hot spots: their own types, days after their start, the grid and its neighbours
    s_day, s_typ, s_grid = [day], [typ], [grid]
    left = n_spots
    for s in spots:
        m = min(s.count, left)
        left -= m
        if m <= 0:
            continue
        ti = np.array([t for t, _ in s.types])
        tw = np.array([w for _, w in s.types])
        s_typ.append(ti[rng.choice(len(ti), size=m, p=tw / tw.sum())])
        ramp = np.linspace(0.5, 1.5, n_days - s.start_day)  # growing since it started
        s_day.append(s.start_day + rng.choice(n_days - s.start_day, size=m, p=ramp / ramp.sum()))
        where = np.array([s.grid, *s.neighbours])
        ww = np.array([6.0] + [1.0] * len(s.neighbours))
        s_grid.append(where[rng.choice(len(where), size=m, p=ww / ww.sum())])
    day = np.concatenate(s_day)
    typ = np.concatenate(s_typ)
    grid = np.concatenate(s_grid)

    # -- time of day, local hours by type
    hour = np.empty(n, dtype=np.int64)
    hour_kind = np.array([list(_HOURS).index(t.hours) for t in types])[typ]
    for k, (_name, w) in enumerate(_HOURS.items()):
        sel = np.flatnonzero(hour_kind == k)
        p = np.asarray(w, dtype=np.float64)
        hour[sel] = rng.choice(24, size=len(sel), p=p / p.sum())
    t = day0_t + day * _DAY + hour * 3600 + rng.integers(0, 3600, n)
    late = t > now_t - 60
    if late.any():  # today: squeeze into the hours already past
        midnight = day0_t + day[late] * _DAY
        t[late] = midnight + (rng.random(int(late.sum())) * np.maximum(now_t - 60 - midnight, 1)).astype(np.int64)

    order = np.argsort(t, kind="stable")
    t, typ, grid = t[order], typ[order], grid[order]
    day = (t - day0_t) // _DAY
    lon, lat = geo.sample(grid, rng) if n else (np.empty(0), np.empty(0))

    # -- columns (dictionary take: vectorised)
    typ_a, grid_a = pa.array(typ.astype(np.int32)), pa.array(grid.astype(np.int32))
    streams = pa.array([x.stream for x in types]).take(typ_a)
    village_a = pa.array(villages).take(grid_a)
    local_day = pa.array([d.strftime("%Y%m%d") for d in days] or [""]).take(pa.array(day.astype(np.int32)))
    district = pa.array([v[:6] for v in villages] or [""]).take(grid_a)
    width = max(8, len(str(n)))
    seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string()), width, "0")
    prefix = pc.if_else(pc.equal(streams, "call"), "J", "A")
    source_id = pc.binary_join_element_wise(prefix, district, local_day, seq, "")
    columns: dict[str, Any] = {
        "stream": streams,
        "category": pa.array([x.code for x in types]).take(typ_a),
        "category_name": pa.array([x.name for x in types]).take(typ_a),
        "is_police": pa.array(np.array([x.is_police for x in types])[typ]),
        "scope_path": pa.array([paths[v] for v in villages] or [""]).take(grid_a),
        "grid_code": pa.array(geo.codes or [""]).take(grid_a),
        "occurred_at": pa.array(t * 1_000_000, pa.timestamp("us")),
        "source_id": source_id,
        "source": pc.if_else(pc.equal(streams, "call"), SOURCES["call"], SOURCES["case"]),
        "lon": pa.array(lon, pa.float64()),
        "lat": pa.array(lat, pa.float64()),
        "unit_code": village_a,
    }
    extra = [("source_id", pa.string()), ("source", pa.string()), ("lon", pa.float64()), ("lat", pa.float64()),
             ("unit_code", pa.string())]
    schema = pa.schema([*CALL_SCHEMA, *(f for f in extra if f[0] not in CALL_SCHEMA.names)])
    table = pa.Table.from_pydict(columns, schema=schema)
    return table.replace_schema_metadata({
        "shiyu.demo.emerging": ";".join(f"{geo.codes[s.grid]}:{s.name}:{days[s.start_day].isoformat()}:{s.count}"
                                        for s in spots)})


def emerging_spots(table: pa.Table) -> list[dict[str, Any]]:
    """The emerging hot spots 新发热点 recorded in a ``generate_calls`` table."""
    raw = (table.schema.metadata or {}).get(b"shiyu.demo.emerging", b"").decode()
    out = []
    for part in filter(None, raw.split(";")):
        grid, name, start, count = part.split(":")
        out.append({"grid": grid, "name": name, "start": start, "records": int(count)})
    return out


def _noop_step(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


def load_calls(session: Session, city: DemoCity, *, seed: int = 1, now: datetime | None = None,
               step: Step = _noop_step, n: int | None = None, months: int | None = None) -> int:
    """Write the demo police records of ``city`` into ``police_records``; returns how many.

    Idempotent: nothing (0) when a record of batch ``"demo"`` is already there. ``n`` and
    ``months`` default from the city's size (``CALL_SIZES``). Chunked bulk inserts (SQLite
    ``executemany``, PostgreSQL ``COPY``), one audit entry for the whole job.
    """
    if session.execute(select(PoliceRecord.id).where(PoliceRecord.batch == BATCH).limit(1)).first() is not None:
        return 0
    size_n, size_months = CALL_SIZES.get(city.size, CALL_SIZES["small"])
    n = size_n if n is None else n
    months = size_months if months is None else months
    now = as_utc(now or utcnow()).replace(microsecond=0)
    tick = step("police records: generate 警情案情生成", 1)
    table = generate_calls(city, n=n, months=months, seed=seed, now=now)
    tick(1)
    imported = utcnow()
    keys = [*COLUMNS, "batch", "imported_at", "diverted_item_id"]
    write = _BulkInsert(session, cast(Table, PoliceRecord.__table__), keys)
    tick = step("police records 警情案情", table.num_rows)
    for start in range(0, table.num_rows, CHUNK):
        part = table.slice(start, CHUNK)
        cols = [part.column(c).to_pylist() for c in COLUMNS]
        rows = [dict(zip(COLUMNS, vals, strict=True), batch=BATCH, imported_at=imported, diverted_item_id=None)
                for vals in zip(*cols, strict=True)]
        write(rows)
        tick(len(rows))
    by_stream = {s: int(pc.sum(pc.equal(table.column("stream"), s)).as_py() or 0) for s in SOURCES}
    non_police = int(pc.sum(pc.invert(table.column("is_police"))).as_py() or 0)
    info = {"records": table.num_rows, "by_stream": by_stream, "non_police": non_police, "months": months,
            "seed": seed, "now": iso(now), "size": city.size, "emerging": emerging_spots(table)}
    meta.put(session, META_KEY, info)
    audit.record(session, Principal.system("demo-loader"), "demo.calls", object_type="job",
                 object_id=f"demo-calls-{seed}", detail={k: info[k] for k in ("records", "by_stream", "non_police")})
    session.flush()
    return table.num_rows
