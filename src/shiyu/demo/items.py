"""Demo history 演示历史工单: years of plausible work items for a demo city.

``load_history(session, city)`` writes a history of events 事件, 12345 hotline requests
12345工单, disputes 矛盾纠纷 and petitions 信访 into a database that already holds the city
(``load_city``), so the UI and the analysis (hot spots 热点 with Getis-Ord Gi*, early
warning 预警, period-over-period 环比 and year-over-year 同比 comparisons) have data to work on.

* Volume: ``small`` about 5,000 items over the last 12 months, ``medium`` about 200,000
  over the last 36 months, ending at ``now``; kinds about 55% events, 30% hotline,
  10% disputes, 5% petitions.
* Time: a yearly cycle per category (street order and environment peak in summer, snow and
  heating in winter, flooding in the plum-rain season, disputes around the Spring Festival
  春节, wage arrears 欠薪 before it), a weekly cycle (fewer items on weekends and holidays of
  the working-day calendar), a slow trend, and office hours within the day.
* Space: every item lies at a random point inside one unified grid 全科网格 (rejection
  sampling with ``shapely.contains_xy``); 8-15 fixed hot spots 热点 (a market, a night
  market, a construction site, an old compound ...) concentrate their own categories in a
  grid and its neighbours, at a few repeated addresses; two or three emerging hot spots
  新发热点 only start in the last months.
* Lifecycle: stage times follow the configured deadlines (时限, ``sla_rules`` and the holiday
  calendar) with per-town performance, occasional stalls, rejections, merges 并单, early
  and overdue escalations to the district, 吹哨报到 with several departments, supervision
  orders 督办, ratings 评价, replies 答复 (every closed petition), repeat petitioners
  重复信访, dispute parties, sessions and follow-up visits; the last three weeks hold the
  current workload (items waiting at every open step, some overdue) and a few pending
  duplicates 疑似重复.
* Timeline 全过程留痕: every step up to ``FULL_TIMELINE_MAX`` items; above it (medium) the
  main ones only (report, dispatch, feedback, close, rate, and every reject, merge,
  escalation, supervision and reply), about 4.6 rows per item.

Written with bulk inserts in chunks of 5,000 (explicit ids, then ``executemany`` on SQLite,
``COPY`` on PostgreSQL) and one audit entry for the whole job, not one per item. The hot
spots are recorded in the ``meta`` key ``demo_history``, which also makes the load
idempotent. Deterministic for a given ``seed`` and ``now`` (whatever the string hash seed).
"""

from __future__ import annotations

import bisect
import calendar
import functools
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import shapely
from faker import Faker
from shapely import Polygon
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from shiyu.demo.city import DemoCity, _mobile, _resident_id
from shiyu.domains.items import config
from shiyu.domains.items.models import (
    Assignment,
    Category,
    DuplicateLink,
    Party,
    Supervision,
    TimelineEntry,
    WorkItem,
)
from shiyu.domains.items.service import NUMBER_PREFIX, haversine_m
from shiyu.kit import meta
from shiyu.kit.timeutil import as_utc, iso, utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit
from shiyu.platform.workflow.calendar import LOCAL_TZ, Duration, WorkCalendar

__all__ = ["HISTORY_SIZES", "KIND_MIX", "META_KEY", "HistoryReport", "HotSpot", "load_history"]

Step = Callable[[str, int], Callable[[int], None]]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

META_KEY: Final = "demo_history"
#: size -> (items, months)
HISTORY_SIZES: Final = {"small": (5_000, 12), "medium": (200_000, 36)}
KIND_MIX: Final = {"event": 0.55, "hotline": 0.30, "dispute": 0.10, "petition": 0.05}
CHUNK: Final = 5_000
#: Up to this many items the timeline keeps every step; above it, the main steps only.
FULL_TIMELINE_MAX: Final = 50_000

_KINDS: Final = ("event", "hotline", "dispute", "petition")
_LOCAL_OFFSET: Final = 8 * 3600  # Asia/Shanghai has had no DST since 1991
_DAY: Final = 86_400
_M_PER_DEG: Final = 111_320.0

# --------------------------------------------------------------------------- departments

DEPT_ABBR: Final = {
    "public_security": "GA", "urban_management": "CG", "market_regulation": "SC", "housing": "ZJ",
    "justice": "SF", "civil_affairs": "MZ", "emergency": "YJ", "environment": "HB",
}
#: Towns have their own police station, law-enforcement team and justice office only.
TOWN_LEVEL_DEPTS: Final = frozenset({"GA", "CG", "SF"})
_FALLBACK_DEPT: Final = {"event": "urban_management", "hotline": "urban_management", "dispute": "justice",
                         "petition": "civil_affairs"}
#: Categories without a department in the taxonomy, routed by code prefix (longest wins).
_DEPT_BY_PREFIX: Final = {
    "PS-06": "market_regulation", "PS-10": "public_security", "PS-11": "public_security",
    "HL-TOPIC-06": "public_security", "HL-TOPIC-10": "justice", "HL-TOPIC-12": "market_regulation",
    "HL-TOPIC-14": "civil_affairs", "HL-TOPIC-19": "justice", "PT-02": "market_regulation",
    "PT-04": "justice", "PT-05": "justice", "PT-10": "environment", "PT-13": "housing", "DS-20": "civil_affairs",
}
_WHISTLE_PARTNERS: Final = ("GA", "CG", "SC", "ZJ", "YJ", "HB", "MZ", "SF")

# --------------------------------------------------------------------------- categories

# Relative weight and seasonal profile of the categories used (others of the kind: weight 1, flat).
_EVENT_CATS: Final[dict[str, tuple[float, str]]] = {
    "EV-01-01": (3, "flat"), "EV-01-02": (8, "summer"), "EV-01-03": (4, "summer"), "EV-01-04": (4, "summer"),
    "EV-01-05": (1.5, "summer"), "EV-01-06": (2, "summer"), "EV-01-07": (1, "flat"), "EV-01-08": (1.5, "flat"),
    "EV-01-09": (0.5, "flat"), "EV-01-10": (3, "winter"), "EV-01-11": (0.4, "rain"), "EV-01-12": (2, "flat"),
    "EV-01-13": (1, "flat"), "EV-01-14": (0.4, "summer"), "EV-01-15": (1.2, "autumn"), "EV-01-16": (2, "summer"),
    "EV-01-17": (0.6, "summer"), "EV-01-18": (0.8, "flat"), "EV-01-99": (0.5, "flat"),
    "EV-02-01": (6, "flat"), "EV-02-02": (2, "flat"), "EV-02-03": (1.2, "flat"), "EV-02-04": (1.2, "flat"),
    "EV-02-05": (0.8, "flat"),
    "EV-03-01": (3, "construction"), "EV-03-02": (3, "construction"), "EV-03-03": (2, "construction"),
    "EV-03-04": (1.5, "construction"), "EV-03-05": (0.6, "construction"), "EV-03-99": (0.3, "flat"),
    "EV-04-01": (0.4, "rain"), "EV-04-02": (0.8, "winter"), "EV-04-03": (0.3, "winter"), "EV-04-04": (2, "rain"),
    "EV-04-05": (0.5, "heating"), "EV-04-06": (1.5, "rain"), "EV-04-07": (1.2, "snow"), "EV-04-08": (0.8, "flat"),
    "EV-04-09": (0.1, "flat"), "EV-04-10": (0.4, "flat"), "EV-04-11": (0.4, "winter"), "EV-04-12": (0.6, "summer"),
    "EV-04-99": (0.3, "flat"),
    "EV-05-01": (8, "summer"), "EV-05-02": (1, "flat"), "EV-05-03": (2, "summer"), "EV-05-04": (7, "summer"),
    "EV-05-05": (7, "flat"), "EV-05-06": (6, "summer"), "EV-05-07": (5, "flat"), "EV-05-08": (2, "summer_strong"),
    "EV-05-09": (1.5, "flat"), "EV-05-10": (2.5, "summer_strong"), "EV-05-11": (2, "summer_strong"),
    "EV-05-12": (0.3, "flat"), "EV-05-13": (1, "summer"), "EV-05-99": (0.5, "flat"),
}
_PS_CATS: Final[dict[str, tuple[float, str]]] = {
    "PS-01-01": (0.5, "flat"), "PS-01-02": (0.5, "flat"), "PS-01-03": (1.5, "winter"),
    "PS-02-01": (3, "flat"), "PS-02-02": (2, "winter"), "PS-02-03": (4, "winter"), "PS-02-04": (1.5, "winter"),
    "PS-03-01": (1.5, "flat"), "PS-03-02": (1, "flat"), "PS-03-03": (0.6, "flat"),
    "PS-04-01": (1.2, "construction"), "PS-04-02": (1, "rain"), "PS-04-03": (1.5, "rain"),
    "PS-05-01": (1, "summer"), "PS-05-02": (0.4, "winter"), "PS-05-03": (0.3, "summer"),
    "PS-06-01": (0.3, "winter"), "PS-06-02": (0.6, "summer"), "PS-06-03": (0.4, "summer"),
    "PS-07-01": (2, "summer"), "PS-07-02": (0.6, "flat"), "PS-07-03": (0.8, "school"),
    "PS-08-01": (1.5, "winter"), "PS-08-02": (1, "summer"), "PS-08-03": (0.8, "flat"), "PS-08-04": (2, "summer"),
    "PS-09-01": (0.4, "rain"), "PS-09-02": (1, "rain"), "PS-09-03": (0.4, "spring"),
    "PS-10-01": (0.4, "festival_shop"), "PS-10-02": (0.3, "festival_shop"), "PS-10-03": (0.2, "flat"),
    "PS-11-01": (0.5, "flat"), "PS-11-02": (0.3, "flat"),
}
_PS_SHARE: Final = 0.15
_HOTLINE_CATS: Final[dict[str, tuple[float, str]]] = {
    "HL-TOPIC-01-01": (8, "summer"), "HL-TOPIC-01-02": (5, "rain"), "HL-TOPIC-02": (2, "flat"),
    "HL-TOPIC-03": (8, "flat"), "HL-TOPIC-04": (2, "construction"), "HL-TOPIC-05": (1, "flat"),
    "HL-TOPIC-06": (5, "flat"), "HL-TOPIC-07": (4, "summer_strong"), "HL-TOPIC-08": (5, "festival_shop"),
    "HL-TOPIC-09-01": (2, "flat"), "HL-TOPIC-09-02": (2, "winter"), "HL-TOPIC-10": (4, "prefestival"),
    "HL-TOPIC-11": (2, "winter"), "HL-TOPIC-12": (3, "winter"), "HL-TOPIC-13": (3, "school"),
    "HL-TOPIC-14": (1, "flat"), "HL-TOPIC-15-01": (4, "summer_strong"), "HL-TOPIC-15-02": (2, "heating"),
    "HL-TOPIC-16": (3, "flat"), "HL-TOPIC-17": (1, "flat"), "HL-TOPIC-18": (3, "flat"), "HL-TOPIC-19": (1, "flat"),
    "HL-TOPIC-99": (2, "flat"),
}
_HOTLINE_TYPES: Final = (("HL-TYPE-01", 30), ("HL-TYPE-02", 15), ("HL-TYPE-03", 35), ("HL-TYPE-04", 8),
                         ("HL-TYPE-05", 6), ("HL-TYPE-06", 3), ("HL-TYPE-99", 3))
_DISPUTE_CATS: Final[dict[str, tuple[float, str]]] = {
    "DS-01": (15, "festival"), "DS-02": (20, "festival"), "DS-03": (10, "festival"), "DS-04": (6, "flat"),
    "DS-05": (4, "flat"), "DS-06": (6, "flat"), "DS-07": (4, "spring"), "DS-08": (3, "flat"), "DS-09": (2, "summer"),
    "DS-10": (6, "prefestival"), "DS-11": (2, "flat"), "DS-12": (5, "flat"), "DS-13": (8, "flat"),
    "DS-14": (0.5, "winter"), "DS-15": (4, "festival_shop"), "DS-16": (2, "festival"), "DS-17": (5, "prefestival"),
    "DS-18": (0.5, "summer"), "DS-19": (2, "festival_shop"), "DS-20": (0.2, "flat"), "DS-99": (2, "flat"),
}
_PETITION_CATS: Final[dict[str, tuple[float, str]]] = {
    "PT-01": (0.3, "flat"), "PT-02": (4, "flat"), "PT-03": (0.3, "flat"), "PT-04": (3, "flat"),
    "PT-05": (15, "prefestival"), "PT-06": (4, "school"), "PT-07": (4, "flat"), "PT-08": (1, "flat"),
    "PT-09": (1, "flat"), "PT-10": (6, "summer"), "PT-11": (8, "winter"), "PT-12": (8, "spring"),
    "PT-13": (12, "flat"), "PT-14": (20, "flat"), "PT-15": (1, "flat"), "PT-16": (3, "flat"), "PT-17": (12, "flat"),
    "PT-18": (2, "flat"), "PT-99": (3, "flat"),
}
#: Matters of the countryside: located mostly in villages 村 rather than communities 社区.
_RURAL_CATS: Final = frozenset({
    "DS-03", "DS-07", "DS-16", "PT-12", "PT-13", "HL-TOPIC-14", "EV-01-18", "EV-01-15", "EV-01-11",
    "PS-09-01", "PS-09-03", "PS-04-03",
})
#: Relative volume on non-working days (weekends, holidays) per kind.
_OFF_DAY: Final = {"event": 0.5, "hotline": 0.8, "dispute": 0.75, "petition": 0.35}
#: Growth per year per kind (slow upward trend; petitions decline as more is settled locally).
_TREND: Final = {"event": 0.10, "hotline": 0.15, "dispute": 0.04, "petition": -0.04}

# Local hour-of-day weights.
_HOURS: Final[dict[str, tuple[float, ...]]] = {
    "grid": (0, 0, 0, 0, 0, 0, .2, .7, 1.6, 2, 2, 1.6, .8, 1, 1.8, 2, 1.8, 1.2, .5, .3, .2, .1, 0, 0),
    "citizen": (.1, .05, .03, .03, .05, .1, .3, .8, 1.5, 2, 2, 1.8, 1.2, 1.3, 1.8, 1.9, 1.7, 1.4, 1.2, 1.2, 1.1,
                .9, .5, .25),
    "sensor": (.6, .5, .4, .4, .4, .5, .7, .9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.1, 1.2, 1.3, 1.3, 1.2, 1, .8),
    "office": (0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 1.8, .4, .6, 2, 2, 1.6, .6, 0, 0, 0, 0, 0, 0),
}

# Spring Festival 春节 (lunar new year) dates; other years fall back to 1 February.
_SPRING_FESTIVAL: Final = tuple(date.fromisoformat(d) for d in (
    "2019-02-05", "2020-01-25", "2021-02-12", "2022-02-01", "2023-01-22", "2024-02-10", "2025-01-29",
    "2026-02-17", "2027-02-06", "2028-01-26", "2029-02-13", "2030-02-03", "2031-01-23", "2032-02-11",
    "2033-01-31", "2034-02-19", "2035-02-08",
))

# --------------------------------------------------------------------------- hot spots

# theme -> (place-name suffix, [(category, weight)], profile of the whole theme)
_THEMES: Final[dict[str, tuple[str, tuple[tuple[str, float], ...]]]] = {
    "market": ("农贸市场", (("EV-05-01", 35), ("EV-05-04", 20), ("EV-01-02", 15), ("EV-05-03", 5),
                            ("HL-TOPIC-08", 10), ("PS-07-01", 6), ("DS-15", 5))),
    "night_market": ("夜市", (("EV-05-10", 30), ("EV-05-08", 20), ("EV-01-16", 18), ("EV-05-04", 10),
                             ("HL-TOPIC-07", 16), ("PS-08-04", 6))),
    "parking": ("商业街", (("EV-05-05", 45), ("EV-05-06", 25), ("PS-02-01", 10), ("HL-TOPIC-06", 15),
                          ("DS-12", 5))),
    "construction": ("安置房工地", (("EV-03-01", 30), ("EV-03-02", 25), ("EV-03-03", 15), ("EV-01-12", 10),
                                  ("HL-TOPIC-04", 10), ("HL-TOPIC-07", 6), ("DS-17", 4))),
    "old_compound": ("新村小区", (("EV-05-07", 20), ("PS-02-03", 15), ("HL-TOPIC-03", 25), ("DS-13", 15),
                                ("DS-02", 15), ("EV-01-02", 10))),
    "station": ("汽车站", (("EV-05-09", 30), ("EV-02-01", 25), ("EV-05-02", 10), ("EV-05-06", 15),
                          ("HL-TOPIC-09-01", 10), ("EV-01-04", 10))),
    "school": ("小学周边", (("EV-05-05", 30), ("EV-05-01", 20), ("PS-07-03", 15), ("PS-03-02", 20),
                           ("HL-TOPIC-13", 15))),
    "river": ("河沿岸", (("EV-01-05", 35), ("PS-08-02", 25), ("EV-01-15", 10), ("HL-TOPIC-07", 20),
                        ("DS-09", 10))),
}
_EMERGING_THEMES: Final[dict[str, tuple[str, tuple[tuple[str, float], ...]]]] = {
    "ebike": ("新建小区", (("PS-02-03", 50), ("PS-02-02", 20), ("HL-TOPIC-09-02", 30))),
    "new_night_market": ("美食街", (("EV-05-10", 35), ("EV-05-08", 25), ("EV-01-16", 20), ("HL-TOPIC-07", 20))),
    "new_site": ("地铁施工点", (("EV-03-01", 35), ("EV-03-02", 30), ("EV-03-04", 15), ("HL-TOPIC-04", 20))),
    "stalls": ("步行街", (("EV-05-01", 45), ("EV-05-04", 35), ("HL-TOPIC-01-01", 20))),
}
_SPOT_SIDES: Final = ("东门", "西侧", "南口", "北侧", "正门")


@dataclass(frozen=True)
class HotSpot:
    """A hot spot 热点: where some categories cluster (``emerging`` ones start late)."""

    name: str
    theme: str
    grid_code: str
    village_code: str
    lon: float
    lat: float
    emerging: bool
    start: datetime
    items: int
    categories: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "theme": self.theme, "grid": self.grid_code, "village": self.village_code,
                "lon": round(self.lon, 7), "lat": round(self.lat, 7), "emerging": self.emerging,
                "start": iso(self.start), "items": self.items, "categories": list(self.categories)}


@dataclass
class HistoryReport:
    items: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    parties: int = 0
    assignments: int = 0
    timeline: int = 0
    supervisions: int = 0
    hot_spots: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False

    def __str__(self) -> str:
        if self.skipped:
            return f"demo history already loaded ({self.items} items)"
        kinds = ", ".join(f"{k} {v}" for k, v in self.by_kind.items())
        return (f"{self.items} items ({kinds}); {self.assignments} assignments, {self.parties} parties, "
                f"{self.timeline} timeline entries, {self.supervisions} supervisions")


def _noop_step(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


# --------------------------------------------------------------------------- texts

_EVENT_TEXT: Final = {
    "EV-01-01": "发现疑似私搭乱建的简易棚房，占用公共空间。",
    "EV-01-02": "路边有生活垃圾暴露堆放，散发异味，需及时清运。",
    "EV-01-03": "积存建筑垃圾和渣土，长时间未清运。",
    "EV-01-04": "路面有明显污渍和散落垃圾，影响市容。",
    "EV-01-05": "水面漂浮垃圾和水草，影响水体环境。",
    "EV-01-10": "人行道砖块松动破损，存在绊倒隐患。",
    "EV-01-12": "运输车辆沿途遗撒泥土砂石。",
    "EV-01-15": "有人焚烧树叶和垃圾，烟雾较大。",
    "EV-01-16": "餐饮店油烟直排，周边居民反映强烈。",
    "EV-02-01": "墙面、电杆上张贴大量非法小广告。",
    "EV-03-01": "工地夜间施工，噪声扰民。",
    "EV-03-02": "工地未落实覆盖、洒水措施，扬尘较大。",
    "EV-03-03": "施工废弃料随意堆放在路边。",
    "EV-03-04": "施工围挡占用车行道，影响通行。",
    "EV-04-04": "下水道堵塞，污水外溢。",
    "EV-04-06": "降雨后路面积水严重，影响通行。",
    "EV-04-07": "路面积雪结冰，行人车辆通行困难。",
    "EV-05-01": "有流动摊贩占道经营，影响行人通行。",
    "EV-05-02": "有流浪乞讨人员滞留，需救助引导。",
    "EV-05-03": "废品收购点占道堆放，环境脏乱。",
    "EV-05-04": "沿街商户店外经营，占用人行道。",
    "EV-05-05": "机动车违规停放在人行道上，堵塞通道。",
    "EV-05-06": "非机动车乱停乱放，占用盲道。",
    "EV-05-07": "楼道及公共区域乱堆杂物。",
    "EV-05-08": "商户使用高音喇叭招揽顾客，噪声扰民。",
    "EV-05-09": "有黑车在路口拉客，扰乱交通秩序。",
    "EV-05-10": "夜间露天烧烤，油烟和噪声扰民。",
    "EV-05-11": "沿街阳台、护栏晾挂衣物，影响市容。",
    "PS-02-01": "消防通道被车辆和杂物占用。",
    "PS-02-02": "楼内消火栓、灭火器损坏缺失。",
    "PS-02-03": "楼道内有电动自行车停放充电，存在火灾隐患。",
    "PS-04-03": "自建房墙体开裂，存在安全隐患。",
    "PS-05-01": "电梯故障，有人员被困。",
    "PS-07-01": "有商户销售来源不明的食品。",
    "PS-07-03": "学校周边流动摊点销售“三无”食品。",
    "PS-08-02": "河道有污水排入，水体发黑发臭。",
    "PS-08-04": "夜间设备运行噪声较大，影响居民休息。",
}
_HOTLINE_TAIL: Final = {
    "HL-TOPIC-01-01": "垃圾清运不及时，周边环境脏乱",
    "HL-TOPIC-01-02": "路灯不亮、井盖松动等市政设施问题",
    "HL-TOPIC-02": "保障性住房申请及租金补贴问题",
    "HL-TOPIC-03": "小区物业服务不到位，电梯、保洁等问题长期未解决",
    "HL-TOPIC-04": "周边施工影响出行和休息",
    "HL-TOPIC-05": "征收补偿进度问题",
    "HL-TOPIC-06": "路口拥堵、信号灯配时不合理",
    "HL-TOPIC-07": "夜间噪声和异味扰民",
    "HL-TOPIC-08": "商家价格不透明、商品质量问题",
    "HL-TOPIC-09-01": "周边治安状况，希望加强巡逻",
    "HL-TOPIC-09-02": "楼道电动车充电、燃气使用等安全隐患",
    "HL-TOPIC-10": "单位拖欠工资、未缴纳社保",
    "HL-TOPIC-11": "困难家庭救助申请问题",
    "HL-TOPIC-12": "社区卫生服务和就医问题",
    "HL-TOPIC-13": "入学政策和学区划分问题",
    "HL-TOPIC-14": "农业补贴和农村道路问题",
    "HL-TOPIC-15-01": "停水、水压不足问题",
    "HL-TOPIC-15-02": "燃气供应和安全检查问题",
    "HL-TOPIC-16": "政务服务办事流程问题",
    "HL-TOPIC-18": "社区公共设施和服务问题",
}
_HOTLINE_VERB: Final = {"HL-TYPE-01": "咨询", "HL-TYPE-02": "求助", "HL-TYPE-03": "投诉", "HL-TYPE-04": "举报",
                        "HL-TYPE-05": "建议", "HL-TYPE-06": "表扬", "HL-TYPE-99": "反映"}
_DISPUTE_REASON: Final = {
    "DS-01": "赡养老人和家庭琐事", "DS-02": "楼上漏水和噪声", "DS-03": "宅基地界址", "DS-04": "合同款项支付",
    "DS-05": "经营场地使用", "DS-06": "人身财产损害赔偿", "DS-07": "承包地边界", "DS-08": "拆迁补偿分配",
    "DS-09": "企业排污影响", "DS-10": "劳动报酬结算", "DS-11": "医疗费用和诊疗结果", "DS-12": "交通事故赔偿",
    "DS-13": "物业费及服务质量", "DS-14": "消防通道占用", "DS-15": "商品质量及退款", "DS-16": "村集体收益分配",
    "DS-17": "拖欠工资", "DS-18": "旅游合同履行", "DS-19": "网购商品退换", "DS-99": "相关权益",
}
_PETITION_MATTER: Final = {
    "PT-02": "企业经营扶持政策落实", "PT-04": "基层干部工作作风", "PT-05": "社保待遇核定和工资拖欠",
    "PT-06": "子女入学安排", "PT-07": "医疗费用报销", "PT-10": "企业排污影响生活", "PT-11": "低保申请审核",
    "PT-12": "农业补贴发放", "PT-13": "土地承包及征地补偿", "PT-14": "房屋征收补偿标准", "PT-16": "商户经营纠纷",
    "PT-17": "案件执行进展", "PT-18": "政务信息公开",
}
_FEEDBACK: Final = {
    "event": ("已到现场核查并处置完毕，拍照留存。", "已责令当事人限期整改，复查已整改到位。",
              "已联合相关单位清理完毕。"),
    "hotline": ("已联系来电人并现场处理，来电人表示认可。", "已向来电人解释相关政策。",
                "问题已协调解决，已回复来电人。"),
    "dispute": ("经调解，双方达成调解协议。", "经多次调解，双方就赔偿金额达成一致。",
                "经调解，双方当事人自愿达成和解。"),
    "petition": ("已调查核实并形成处理意见。", "已协调相关部门落实信访人合理诉求。", "经核查，已依法依规作出处理。"),
}
_PETITION_REPLY: Final = (
    "经调查核实，您反映的问题已依法依规处理，现予书面答复。",
    "经核查，您反映的情况部分属实，相关部门已落实整改，现予答复。",
    "经研究，您的诉求符合政策规定的部分已予落实，不符合部分已作解释说明。",
)
_REJECT_NOTE: Final = {
    "event": "经核实，不属于受理范围。", "hotline": "经核实，诉求不属于本平台受理范围，已告知来电人。",
    "dispute": "经审查，已进入诉讼程序，不予受理。",
    "petition": "经审查，该事项不属于本机关信访受理范围，已告知信访人向有权机关提出。",
}
_RISK: Final = (("low", 70), ("medium", 23), ("high", 7))
_CHANNELS: Final = (("people", 60), ("lawyer", 12), ("psychologist", 5), ("industry", 10), ("non_litigation", 10),
                    ("court", 3))
_RATINGS: Final = ((5, 0.58), (4, 0.26), (3, 0.07), (2, 0.045), (1, 0.045))
_RATINGS_LATE: Final = ((5, 0.3), (4, 0.3), (3, 0.15), (2, 0.12), (1, 0.13))
#: The step a held item waits at: reported, accepted, registered, dispatched, handling, feedback, verified.
_HOLD: Final = ((0, 1.0), (1, 0.6), (2, 1.0), (3, 1.2), (4, 3.0), (5, 1.5), (6, 0.7))
_ROAD_SUFFIX: Final = ("路", "街", "大道", "东路", "西路", "南路", "北路", "巷")


# --------------------------------------------------------------------------- small helpers


def _stem(name: str) -> str:
    for suffix in ("社区", "街道", "村", "镇", "区", "市"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _ri(rnd: random.Random, a: int, b: int) -> int:
    """``rnd.randint(a, b)``, cheaper (plenty for demo data)."""
    return a + int(rnd.random() * (b - a + 1))


@functools.cache
def _cumulative(weights: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


def _pick(rnd: random.Random, pairs: Sequence[tuple[Any, float]]) -> Any:
    """A weighted choice (``random.choices`` for one value, with the cumulative weights cached)."""
    cum = _cumulative(tuple(p[1] for p in pairs))
    return pairs[bisect.bisect_right(cum, rnd.random() * cum[-1])][0]


def _number_hex(i: int, key: int) -> int:
    """A keyed bijection of 24-bit integers: distinct ``i`` always give distinct values."""
    m = 0xFFFFFF
    x = (i * 0x9E3779 + key) & m
    x ^= x >> 11
    x = (x * 0xB5297B) & m  # odd multiplier: invertible mod 2**24
    x ^= x >> 7
    x = (x * 0x6C8E9D) & m
    x ^= x >> 13
    return x


def _circular(doy: FloatArray, centre: float) -> FloatArray:
    d = np.abs(doy - centre) % 365.25
    return np.minimum(d, 365.25 - d)


def _festival_offset(days: Sequence[date]) -> FloatArray:
    """Signed days from the nearest Spring Festival 春节 (negative before it)."""
    years = sorted({d.year for d in days} | {min(d.year for d in days) - 1, max(d.year for d in days) + 1})
    known = {f.year: f for f in _SPRING_FESTIVAL}
    fests = [known.get(y, date(y, 2, 1)) for y in years]
    out = np.empty(len(days))
    for i, d in enumerate(days):
        out[i] = min(((d - f).days for f in fests), key=abs)
    return out


def _profiles(days: Sequence[date]) -> dict[str, FloatArray]:
    doy = np.array([d.timetuple().tm_yday for d in days], dtype=np.float64)
    fest = _festival_offset(days)
    two_pi = 2 * math.pi / 365.25
    p: dict[str, FloatArray] = {
        "flat": np.ones(len(days)),
        "summer": 1 + 0.35 * np.cos(two_pi * (doy - 196)),
        "summer_strong": 1 + 0.7 * np.cos(two_pi * (doy - 200)),
        "winter": 1 + 0.4 * np.cos(two_pi * (doy - 15)),
        "heating": np.maximum(0.08, 1 + 1.3 * np.cos(two_pi * (doy - 15))),
        "snow": 4.0 * np.exp(-((_circular(doy, 20) / 18) ** 2)),
        "rain": 0.35 + 2.5 * np.exp(-((_circular(doy, 182) / 24) ** 2)),
        "autumn": 1 + 0.6 * np.exp(-((_circular(doy, 300) / 30) ** 2)),
        "spring": 1 + 0.6 * np.exp(-((_circular(doy, 95) / 30) ** 2)),
        "construction": (1 + 0.3 * np.cos(2 * two_pi * (doy - 100))) * (1 - 0.6 * np.exp(-((fest / 12) ** 2))),
        "school": 1 + 0.6 * np.exp(-((_circular(doy, 245) / 15) ** 2)) - 0.35 * np.exp(-((_circular(doy, 210) / 25)
                                                                                          ** 2)),
        "festival": 1 + 0.9 * np.exp(-(((fest - 6) / 14) ** 2)),
        "prefestival": 1 + 1.8 * np.exp(-(((fest + 20) / 16) ** 2)),
        "festival_shop": 1 + 0.5 * np.exp(-(((fest + 12) / 12) ** 2)) + 0.3 * np.exp(-((_circular(doy, 315) / 6)
                                                                                        ** 2)),
    }
    # Disputes as a whole rise around the Spring Festival (矛盾纠纷 春节前后高发).
    p["_dispute_all"] = 1 + 0.3 * np.exp(-((fest / 25) ** 2))
    return p


# --------------------------------------------------------------------------- geometry


class _Geo:
    """The unified grids as arrays, with rejection sampling inside them."""

    def __init__(self, city: DemoCity) -> None:
        self.grids = list(city.grids)
        self.codes = [g.code for g in self.grids]
        self.polys = np.array([g.polygon for g in self.grids], dtype=object)
        shapely.prepare(self.polys)
        b = shapely.bounds(self.polys)
        self.minx, self.miny, self.maxx, self.maxy = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        c = shapely.centroid(self.polys)
        self.cx, self.cy = shapely.get_x(c), shapely.get_y(c)
        self.tree = shapely.STRtree(self.polys)

    def sample(self, idx: IntArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """Uniform random points inside grids ``idx`` (one per entry)."""
        n = len(idx)
        x, y = np.empty(n), np.empty(n)
        todo = np.arange(n)
        for _ in range(200):
            if len(todo) == 0:
                break
            g = idx[todo]
            cx = rng.uniform(self.minx[g], self.maxx[g])
            cy = rng.uniform(self.miny[g], self.maxy[g])
            ok = shapely.contains_xy(self.polys[g], cx, cy)
            x[todo[ok]], y[todo[ok]] = cx[ok], cy[ok]
            todo = todo[~ok]
        for k in todo:  # practically never: fall back to a point surely inside
            p = self.polys[idx[k]].representative_point()
            x[k], y[k] = p.x, p.y
        return np.round(x, 7), np.round(y, 7)

    def inside(self, g: int, x: float, y: float) -> bool:
        return bool(shapely.contains_xy(self.polys[g], x, y))

    def neighbours(self, g: int) -> list[int]:
        hits = self.tree.query(self.polys[g], predicate="intersects")
        return sorted(int(h) for h in hits if int(h) != g)


def _near(rng: np.random.Generator, x: float, y: float, metres: float, n: int) -> tuple[FloatArray, FloatArray]:
    dy = rng.normal(0, metres / _M_PER_DEG, n)
    dx = rng.normal(0, metres / (_M_PER_DEG * math.cos(math.radians(y))), n)
    return x + dx, y + dy


# --------------------------------------------------------------------------- the plan


@dataclass
class _Spot:
    name: str
    theme: str
    grid: int
    spots: list[tuple[float, float]]
    neighbours: list[int]
    emerging: bool
    start_day: int
    cats: list[tuple[str, float]]
    count: int = 0


@dataclass
class _Person:
    name: str
    phone: str
    id_number: str
    address: str


class _Deadlines:
    """Deadlines from the configured SLA rules and the working-day calendar, on epoch seconds."""

    def __init__(self, session: Session) -> None:
        self.table = config.sla_table(session)
        self.cal: WorkCalendar = config.calendar(session)
        self._dur: dict[tuple[str, str | None, str | None, str], Duration | None] = {}
        self._days: dict[tuple[Duration, int], int] = {}

    def duration(self, kind: str, cat: str | None, pri: str | None, step: str) -> Duration | None:
        key = (kind, cat, pri, step)
        if key not in self._dur:
            self._dur[key] = self.table.duration(kind, cat, pri, step)
        return self._dur[key]

    def at(self, kind: str, cat: str | None, pri: str | None, step: str, t: int) -> int | None:
        d = self.duration(kind, cat, pri, step)
        if d is None:
            return None
        if d.unit == "minutes":
            return t + 60 * d.amount
        if d.unit == "hours":
            return t + 3600 * d.amount
        day = (t + _LOCAL_OFFSET) // _DAY
        key = (d, day)
        hit = self._days.get(key)
        if hit is None:
            start = datetime.fromtimestamp(day * _DAY - _LOCAL_OFFSET + 12 * 3600, UTC)
            hit = int(self.cal.add(start, d).timestamp())
            self._days[key] = hit
        return hit


def _dt(t: int | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


@dataclass
class _Item:
    """One planned item: everything needed to write it and its children."""

    kind: str
    cat: str
    grid: int
    lon: float
    lat: float
    created: int
    spot: int = -1
    repeat_of: int | None = None
    merged_into: int | None = None
    person: _Person | None = None
    row: dict[str, Any] = field(default_factory=dict)
    parties: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    supervision: dict[str, Any] | None = None
    fate: str = "normal"
    duplicate_of: int | None = None
    accepted_at: int = 0
    end: int = 0


class _Planner:
    def __init__(self, session: Session, city: DemoCity, *, seed: int, now: datetime, total: int,
                 months: int) -> None:
        self.city = city
        self.seed = seed
        self.now = now
        self.now_t = int(now.timestamp())
        self.total = total
        self.rng = np.random.default_rng([seed, 0x5E1D])
        self.rnd = random.Random(f"shiyu-history-{seed}")
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed * 7919 + 11)
        self.dl = _Deadlines(session)
        self.geo = _Geo(city)
        # period: local dates from the same day ``months`` earlier to today
        today = now.astimezone(LOCAL_TZ).date()
        y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
        first = date(y, m + 1, min(today.day, calendar.monthrange(y, m + 1)[1])) + timedelta(days=1)
        self.days = [first + timedelta(days=i) for i in range((today - first).days + 1)]
        self.day0 = (datetime(first.year, first.month, first.day, tzinfo=LOCAL_TZ).astimezone(UTC))
        self.day0_t = int(self.day0.timestamp())
        self.profiles = _profiles(self.days)
        working = np.array([self.dl.cal.is_working_day(d) for d in self.days])
        years = np.arange(len(self.days)) / 365.25
        self.weekly = {k: np.where(working, 1.0, _OFF_DAY[k]) for k in _KINDS}
        self.trend = {k: 1 + _TREND[k] * years for k in _KINDS}
        # categories present in the database
        rows = session.execute(select(Category.code, Category.name, Category.kind, Category.parent_code,
                                      Category.department, Category.active)).all()
        parents = {r.parent_code for r in rows if r.parent_code}
        self.cat_name = {r.code: r.name for r in rows}
        self.cat_kind = {r.code: r.kind for r in rows}
        self.cat_dept = {r.code: r.department for r in rows}
        leaves = {r.code for r in rows if r.active and r.code not in parents}
        self.leaves = leaves
        self.cats = self._category_tables(leaves)
        # units and departments (paths as imported by load_city)
        upaths = dict(session.execute(select(Unit.code, Unit.path)).all())
        self.unit = {u.code: u for u in city.units}
        self.path = {u.code: upaths.get(u.code) or self._path(u.code) for u in city.units}
        self.depts = {d.code for d in city.departments if d.code in upaths}
        self.grid_village = [g.village_code for g in self.geo.grids]
        towns = [u.code for u in city.units if u.kind == "town"]
        perf = self.rng.lognormal(0.0, 0.3, len(towns))
        self.town_perf = dict(zip(towns, perf.tolist(), strict=True))
        self.roads = self._roads()
        self.people = self._people()

    # -- set-up ---------------------------------------------------------------------

    def _path(self, code: str) -> str:
        chain = []
        u = self.unit.get(code)
        while u is not None:
            chain.append(u.code)
            u = self.unit.get(u.parent_code) if u.parent_code else None
        return "/" + "/".join(reversed(chain)) + "/"

    def _category_tables(self, leaves: set[str]) -> dict[str, list[tuple[str, float, str]]]:
        out: dict[str, list[tuple[str, float, str]]] = {}

        def table(spec: dict[str, tuple[float, str]], kind: str, prefixes: tuple[str, ...],
                  share: float = 1.0) -> list[tuple[str, float, str]]:
            codes = sorted(c for c in leaves if self.cat_kind.get(c) == kind and c.startswith(prefixes)
                           and not c.startswith("HL-TYPE"))
            got = [(c, *spec.get(c, (0.5, "flat"))) for c in codes]
            s = sum(w for _, w, _ in got) or 1.0
            return [(c, share * w / s, p) for c, w, p in got]

        ev = table(_EVENT_CATS, "event", ("EV-01-", "EV-02-", "EV-03-", "EV-04-", "EV-05-"), 1 - _PS_SHARE)
        ps = table(_PS_CATS, "event", ("PS-",), _PS_SHARE)
        out["event"] = ev + ps
        out["hotline"] = table(_HOTLINE_CATS, "hotline", ("HL-TOPIC-",))
        out["dispute"] = table(_DISPUTE_CATS, "dispute", ("DS-",))
        out["petition"] = table(_PETITION_CATS, "petition", ("PT-",))
        for kind, rows in out.items():
            if not rows:  # an edited taxonomy without the seeded codes: any leaf of the kind
                codes = sorted(c for c in leaves if self.cat_kind.get(c) == kind)
                out[kind] = [(c, 1.0 / max(len(codes), 1), "flat") for c in codes]
        self.hotline_types = [(c, w) for c, w in _HOTLINE_TYPES if c in leaves] or [("", 1.0)]
        return out

    def _roads(self) -> dict[str, list[str]]:
        roads: dict[str, list[str]] = {}
        for u in self.city.units:
            if u.kind == "village":
                stem = _stem(u.name)
                sfx = self.rnd.sample(_ROAD_SUFFIX, 3)
                roads[u.code] = [f"{stem}{s}" for s in sfx]
        return roads

    def _people(self) -> dict[str, list[_Person]]:
        """Residents per district (callers, petitioners, parties), so people recur."""
        size = min(12_000, max(1_200, self.total // 16))
        districts = [u for u in self.city.units if u.kind == "district"]
        grids_per = Counter(self.grid_village_district(g) for g in range(len(self.geo.grids)))
        all_grids = max(sum(grids_per.values()), 1)
        out: dict[str, list[_Person]] = {}
        for d in districts:
            n = max(50, size * grids_per[d.code] // all_grids)
            villages = [u for u in self.city.units if u.kind == "village" and u.code.startswith(d.code[:6])]
            people = []
            for _ in range(n):
                v = villages[self.rnd.randrange(len(villages))] if villages else None
                road = self.roads[v.code][self.rnd.randrange(3)] if v else ""
                addr = f"{v.name if v else ''}{road}{_ri(self.rnd, 1, 300)}号"
                people.append(_Person(str(self.fake.name()), _mobile(self.fake), _resident_id(self.fake, d.code[:6]),
                                      addr))
            out[d.code] = people
        return out

    def grid_village_district(self, g: int) -> str:
        return self.grid_village[g][:6] + "000000"

    # -- volumes --------------------------------------------------------------------

    def _grid_weights(self) -> dict[str, FloatArray]:
        geo = self.geo
        n = len(geo.codes)
        urban = np.array([int(v[9:12]) < 200 for v in self.grid_village])
        xs, ys = geo.cx, geo.cy
        cx, cy = float(np.mean(xs)), float(np.mean(ys))
        reach = 0.35 * max(float(xs.max() - xs.min()), float(ys.max() - ys.min()), 1e-6)
        core = 0.7 + 0.6 * np.exp(-(((xs - cx) ** 2 + (ys - cy) ** 2) / reach**2))
        base = self.rng.lognormal(0.0, 0.2, n)
        w = {
            "event": base * core * np.where(urban, 1.0, 0.55) * self.rng.lognormal(0, 0.12, n),
            "hotline": base * core * np.where(urban, 1.0, 0.5) * self.rng.lognormal(0, 0.12, n),
            "dispute": base * np.where(urban, 1.0, 1.1) * self.rng.lognormal(0, 0.12, n),
            "petition": base * np.where(urban, 1.0, 0.9) * self.rng.lognormal(0, 0.15, n),
            "rural": base * np.where(urban, 0.25, 3.0),
        }
        return {k: v / v.sum() for k, v in w.items()}

    def _day_profile(self, kind: str, profile: str) -> FloatArray:
        p = self.profiles[profile] * self.weekly[kind] * self.trend[kind]
        if kind == "dispute":
            p = p * self.profiles["_dispute_all"]
        return p

    def _hot_spots(self, n_hot: int) -> list[_Spot]:
        rnd, rng, geo = self.rnd, self.rng, self.geo
        n_steady = 8 if self.total < 50_000 else _ri(rnd, 12, 15)
        n_emerging = 2 if self.total < 50_000 else 3
        urban = [g for g, v in enumerate(self.grid_village) if int(v[9:12]) < 200]
        cx, cy = float(np.mean(geo.cx)), float(np.mean(geo.cy))
        pool = sorted(urban or range(len(geo.codes)),
                      key=lambda g: (geo.cx[g] - cx) ** 2 + (geo.cy[g] - cy) ** 2)
        pool = pool[: max(len(pool) * 2 // 3, n_steady + n_emerging)]
        taken: set[int] = set()
        themes = list(_THEMES)
        rnd.shuffle(themes)
        emerging = list(_EMERGING_THEMES)
        rnd.shuffle(emerging)
        spots: list[_Spot] = []
        tries = 0
        while len(spots) < n_steady + n_emerging and tries < 10_000:
            tries += 1
            g = pool[rnd.randrange(len(pool))]
            if g in taken:
                continue
            nb = geo.neighbours(g)
            k = len(spots)
            is_em = k >= n_steady
            theme = emerging[(k - n_steady) % len(emerging)] if is_em else themes[k % len(themes)]
            suffix, cats = (_EMERGING_THEMES if is_em else _THEMES)[theme]
            cats = [(c, w) for c, w in cats if c in self.leaves]
            if not cats:
                continue
            taken.add(g)
            taken.update(nb)
            # a centre well inside the grid, and a few addresses near it
            poly: Polygon = geo.polys[g]
            inner = poly.buffer(-40 / _M_PER_DEG)
            area = inner if (not inner.is_empty and inner.area > 0.1 * poly.area) else poly
            centre = area.representative_point()
            xs, ys = geo.sample(np.array([g] * 12, dtype=np.int64), rng)
            pts = [(round(centre.x, 7), round(centre.y, 7))]
            for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
                if len(pts) == 4:
                    break
                if math.hypot((x - centre.x) * _M_PER_DEG * 0.85, (y - centre.y) * _M_PER_DEG) < 250:
                    pts.append((x, y))
            village = self.unit[self.grid_village[g]]
            start = 0 if not is_em else max(0, len(self.days) - _ri(rnd, 60, 90))
            spots.append(_Spot(f"{_stem(village.name)}{suffix}", theme, g, pts, nb, is_em, start, cats))
        # counts: the steady ones share ``n_hot``; emerging ones run hotter, but only recently
        steady = [s for s in spots if not s.emerging]
        w = self.rng.lognormal(0.0, 0.15, len(steady))
        shares = np.floor(n_hot * w / w.sum()).astype(int)
        for s, c in zip(steady, shares.tolist(), strict=True):
            s.count = c
        per_day = n_hot / max(len(steady), 1) / len(self.days)
        for s in spots:
            if s.emerging:
                s.count = max(25, int(1.8 * per_day * (len(self.days) - s.start_day)))
        return spots

    def _draw(self, kind: str, cats: list[tuple[str, float, str]], n: int, active: FloatArray | None = None
              ) -> tuple[IntArray, list[str]]:
        """``n`` (day, category) draws from the seasonal intensity of each category."""
        if n <= 0 or not cats:
            return np.zeros(0, dtype=np.int64), []
        cols = []
        for code, w, prof in cats:
            k = self.cat_kind.get(code, kind)
            col = w * self._day_profile(k, prof)
            cols.append(col if active is None else col * active)
        mat = np.stack(cols, axis=1)
        p = (mat / mat.sum()).ravel()
        counts = self.rng.multinomial(n, p)
        flat = np.repeat(np.arange(len(p)), counts)
        self.rng.shuffle(flat)
        day, ci = np.divmod(flat, len(cats))
        return day.astype(np.int64), [cats[c][0] for c in ci.tolist()]

    def _times(self, day: IntArray, hours: Sequence[str]) -> IntArray:
        """Epoch seconds: a local time of day by source profile, never after ``now``."""
        n = len(day)
        out = np.empty(n, dtype=np.int64)
        hour = np.empty(n, dtype=np.int64)
        for prof in sorted(set(hours)):
            mask = np.array([h == prof for h in hours], dtype=bool)
            w = np.asarray(_HOURS[prof], dtype=np.float64)
            hour[mask] = self.rng.choice(24, size=int(mask.sum()), p=w / w.sum())
        secs = hour * 3600 + self.rng.integers(0, 3600, n)
        midnight = np.array([int(datetime(d.year, d.month, d.day, tzinfo=LOCAL_TZ).timestamp()) for d in self.days],
                            dtype=np.int64)
        out = midnight[day] + secs
        late = out > self.now_t - 60
        if late.any():  # today: squeeze into the hours already past
            span = np.maximum(self.now_t - 60 - midnight[day[late]], 1)
            out[late] = midnight[day[late]] + (self.rng.random(int(late.sum())) * span).astype(np.int64)
        return out

    # -- items ----------------------------------------------------------------------

    def plan(self) -> tuple[list[_Item], list[_Spot]]:
        rng, geo = self.rng, self.geo
        counts = {k: int(round(self.total * KIND_MIX[k])) for k in _KINDS}
        hot_share = 0.32 if self.total < 50_000 else 0.10
        spots = self._hot_spots(int(self.total * hot_share))
        items: list[_Item] = []
        hot_by_kind: Counter[str] = Counter()
        # hot-spot items: theme categories around the spot
        for si, s in enumerate(spots):
            active = np.zeros(len(self.days))
            if s.emerging:
                span = len(self.days) - s.start_day
                active[s.start_day:] = 0.25 + np.linspace(0, 1, span) ** 1.5 * 1.5
            else:
                active[:] = 1.0
            tot = sum(w for _, w in s.cats)
            cats = [(c, w / tot, (_EVENT_CATS | _PS_CATS | _HOTLINE_CATS | _DISPUTE_CATS).get(c, (1, "flat"))[1])
                    for c, w in s.cats]
            days, codes = self._draw("event", cats, s.count, active)
            share_centre = 0.8 if s.emerging else 0.65
            centre = rng.random(len(days)) < share_centre
            if not s.neighbours:
                centre[:] = True
            exact = rng.random(len(days)) < 0.35
            spot_i = rng.choice(len(s.spots), size=len(days), p=self._spot_p(len(s.spots)))
            for j in range(len(days)):
                code = codes[j]
                kind = self.cat_kind[code]
                if centre[j]:
                    g = s.grid
                    x, y = s.spots[spot_i[j]]
                    if not exact[j]:
                        jx, jy = _near(rng, x, y, 25.0, 1)
                        if geo.inside(g, float(jx[0]), float(jy[0])):
                            x, y = round(float(jx[0]), 7), round(float(jy[0]), 7)
                else:
                    g, x, y = self._spill(s)
                items.append(_Item(kind, code, g, x, y, 0, spot=si))
                items[-1].row["_day"] = int(days[j])
                hot_by_kind[kind] += 1
            s.count = len(days)
        # background: seasonal draws per kind, grids by kind (rural matters in villages)
        gw = self._grid_weights()
        busy = np.ones(len(geo.codes))  # a hot spot sits in a busy area: more of everything around it
        for sp in spots:
            if not sp.emerging:
                busy[[sp.grid, *sp.neighbours]] = 2.0
        gw = {k: (v * busy) / (v * busy).sum() for k, v in gw.items()}
        for kind in _KINDS:
            n = max(0, counts[kind] - hot_by_kind[kind])
            days, codes = self._draw(kind, self.cats[kind], n)
            rural = np.array([c in _RURAL_CATS for c in codes], dtype=bool)
            g = np.empty(len(codes), dtype=np.int64)
            g[~rural] = rng.choice(len(geo.codes), size=int((~rural).sum()), p=gw[kind])
            g[rural] = rng.choice(len(geo.codes), size=int(rural.sum()), p=gw["rural"])
            xs, ys = geo.sample(g, rng)
            for j in range(len(codes)):
                it = _Item(kind, codes[j], int(g[j]), float(xs[j]), float(ys[j]), 0)
                it.row["_day"] = int(days[j])
                items.append(it)
        # sources and times
        sources = [self._source(it) for it in items]
        hours = [("office" if it.kind == "petition" and src != "online" else
                  "grid" if src == "grid" else "sensor" if src == "sensor" else "citizen")
                 for it, src in zip(items, sources, strict=True)]
        t = self._times(np.array([it.row.pop("_day") for it in items], dtype=np.int64), hours)
        for it, src, tt in zip(items, sources, t.tolist(), strict=True):
            it.created = int(tt)
            it.row["source"] = src
        items.sort(key=lambda it: (it.created, it.kind, it.cat, it.grid, it.lon, it.lat))
        self._duplicates(items)
        self._petitioners(items)
        return items, spots

    @staticmethod
    def _spot_p(n: int) -> list[float]:
        w = [3.0] + [1.0] * (n - 1)
        s = sum(w)
        return [x / s for x in w]

    def _spill(self, s: _Spot) -> tuple[int, float, float]:
        """A point near the spot that falls in one of the neighbouring grids."""
        geo, rng = self.geo, self.rng
        x0, y0 = s.spots[0]
        # spill within about half a grid of the spot, so the nearest neighbours get most of it
        sigma = 0.5 * math.sqrt(float(geo.polys[s.grid].area)) * _M_PER_DEG
        xs, ys = _near(rng, x0, y0, sigma, 24)
        hits = np.stack([shapely.contains_xy(geo.polys[g], xs, ys) for g in s.neighbours])  # (grids, points)
        ok = hits.any(axis=0)
        if ok.any():
            k = int(np.argmax(ok))
            g = s.neighbours[int(np.argmax(hits[:, k]))]
            return g, round(float(xs[k]), 7), round(float(ys[k]), 7)
        g = s.neighbours[int(rng.integers(len(s.neighbours)))]
        px, py = geo.sample(np.array([g], dtype=np.int64), rng)
        return g, float(px[0]), float(py[0])

    def _source(self, it: _Item) -> str:
        r = self.rnd.random()
        if it.kind == "event":
            sensorish = it.cat in ("EV-04-06", "EV-03-02", "PS-08-01", "PS-08-04", "EV-05-05", "PS-05-01")
            if sensorish and r < 0.3:
                return "sensor"
            return "grid" if r < 0.84 else "citizen" if r < 0.96 else "sensor"
        if it.kind == "hotline":
            return "hotline"
        if it.kind == "dispute":
            return "grid" if r < 0.55 else "visit" if r < 0.8 else "police" if r < 0.92 else "hotline"
        return "visit" if r < 0.35 else "letter" if r < 0.55 else "online"

    def _duplicates(self, items: list[_Item]) -> None:
        """并单: a few events and hotline requests repeat one reported shortly before, nearby."""
        last: dict[tuple[str, int], int] = {}
        for i, it in enumerate(items):
            if it.kind not in ("event", "hotline"):
                continue
            key = (it.cat, it.grid)
            j = last.get(key)
            if j is not None and it.created - items[j].created < 48 * 3600 and self.rnd.random() < 0.45:
                tgt = items[j]
                x, y = _near(self.rng, tgt.lon, tgt.lat, 30.0, 1)
                if self.geo.inside(it.grid, float(x[0]), float(y[0])):
                    it.lon, it.lat = round(float(x[0]), 7), round(float(y[0]), 7)
                else:
                    it.lon, it.lat = tgt.lon, tgt.lat
                it.merged_into = j
                continue
            last[key] = i

    def _petitioners(self, items: list[_Item]) -> None:
        """Petitioners; some come back about the same matter 重复信访 (same ID, same category)."""
        earlier: dict[str, list[int]] = defaultdict(list)
        firsts: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            if it.kind != "petition":
                continue
            district = self.grid_village_district(it.grid)
            prev = [j for j in earlier[district][-80:] if it.created - items[j].created < 330 * _DAY]
            if prev and self.rnd.random() < 0.14:
                j = prev[self.rnd.randrange(len(prev))]
                src = items[j]
                it.person, it.cat, it.grid, it.lon, it.lat = src.person, src.cat, src.grid, src.lon, src.lat
            else:
                people = self.people[district]
                it.person = people[self.rnd.randrange(len(people))]
            assert it.person is not None
            key = (it.person.id_number, it.cat)
            for j in firsts[key]:
                if it.created - items[j].created <= 365 * _DAY:
                    it.repeat_of = j
                    break
            firsts[key].append(i)
            earlier[district].append(i)

    # -- lifecycle ------------------------------------------------------------------

    def build(self, items: list[_Item], spots: list[_Spot], full_timeline: bool,
              progress: Callable[[int], None] | None = None) -> None:
        key = int(self.rng.integers(0, 1 << 24))
        spot_names = [s.name for s in spots]
        for i, it in enumerate(items):
            self._build_one(i, it, items, key, spot_names, full_timeline)
            if progress is not None and (i + 1) % CHUNK == 0:
                progress(CHUNK)
        if progress is not None:
            progress(len(items) % CHUNK)

    def _build_one(self, i: int, it: _Item, items: list[_Item], key: int, spot_names: list[str],
                   full: bool) -> None:
        rnd, dl, now = self.rnd, self.dl, self.now_t
        kind, cat = it.kind, it.cat
        village = self.unit[self.grid_village[it.grid]]
        town = self.unit[village.parent_code or ""]
        district = self.unit[town.parent_code or ""]
        perf = self.town_perf.get(town.code, 1.0)
        src = it.row["source"]
        pri = self._priority(it)
        t0 = it.created
        local = datetime.fromtimestamp(t0 + _LOCAL_OFFSET, UTC)
        number = f"{NUMBER_PREFIX[kind]}{local:%Y%m%d}-{_number_hex(i, key):06X}"

        def lag(due: int | None, start: int, median: float, fallback: int) -> int:
            """Time taken for a step: a share of its deadline, sometimes stalled."""
            span = (due - start) if due is not None and due > start else fallback
            f = median * perf * math.exp(rnd.gauss(0, 0.45))
            if rnd.random() < 0.015:
                f = max(f, 1.0) * math.exp(rnd.gauss(0.8, 0.6))
            return max(60, int(span * f))

        # the current workload: some recent items wait at one step beyond ``now``
        hold = -1
        if now - t0 < 21 * _DAY and rnd.random() < 0.15:
            hold = _pick(rnd, _HOLD)

        def held(k: int, prev: int, nxt: int) -> int:
            return max(nxt, now + _ri(rnd, 3600, 5 * _DAY)) if k == hold and prev <= now else nxt

        acc_due = dl.at(kind, cat, pri, "accept", t0)
        t_acc = held(0, t0, t0 + lag(acc_due, t0, 0.2, 3600))
        fate = "normal"
        if it.merged_into is not None:
            target = items[it.merged_into]
            if target.fate == "normal" and target.created <= t_acc < target.end:
                fate = "merged"
            else:  # the first report was already settled: this one runs its own course
                it.merged_into = None
        elif rnd.random() < {"event": 0.02, "hotline": 0.04, "dispute": 0.02, "petition": 0.08}[kind]:
            fate = "rejected"
        escalate_early = fate == "normal" and rnd.random() < {"event": 0.01, "hotline": 0.01, "dispute": 0.05,
                                                               "petition": 0.04}[kind]
        slow = 1.0
        if kind in ("dispute", "petition") and rnd.random() < 0.01:
            slow = rnd.uniform(3, 8)  # a backlog case 积案
        t_reg = held(1, t_acc, t_acc + {"event": _ri(rnd, 60, 900), "hotline": _ri(rnd, 60, 1800),
                                        "dispute": _ri(rnd, 1800, _DAY), "petition": _ri(rnd, 3600, 3 * _DAY)
                                        }[kind])
        t_esc = t_acc + (t_reg - t_acc) // 2 if escalate_early else None
        dis_due = dl.at(kind, cat, pri, "dispatch", t_reg)
        t_dis = held(2, t_reg, t_reg + lag(dis_due, t_reg, 0.25, 3600))
        handle_due = dl.at(kind, cat, pri, "handle", t_acc if kind == "petition" else t_dis)
        ack_due = dl.at(kind, cat, pri, "acknowledge", t_dis)
        t_ack = held(3, t_dis, t_dis + lag(ack_due, t_dis, 0.25, 3600))
        t_fb = held(4, t_ack, t_ack + int(lag(handle_due, t_ack, 0.3 if kind == "petition" else 0.35, 2 * _DAY) * slow))
        ver_due = dl.at(kind, cat, pri, "verify", t_fb)
        t_ver = held(5, t_fb, t_fb + lag(ver_due, t_fb, 0.2, 4 * 3600))
        t_close = held(6, t_ver, t_ver + int(3600 * math.exp(rnd.gauss(0.5 if kind in ("event", "hotline") else 2.5,
                                                                       0.8))))
        t_reply = t_ver + int((t_close - t_ver) * rnd.uniform(0.2, 0.8)) if kind == "petition" else t_ver
        rate_p = {"hotline": 0.72, "event": 0.12 if src == "grid" else 0.45, "dispute": 0.4, "petition": 0.5}[kind]
        t_rate = t_close + int(3600 * math.exp(rnd.gauss(2.5, 0.8))) if rnd.random() < rate_p else None

        # where the item stands at ``now``
        if fate == "rejected":
            stages = [("reported", t0), ("rejected", t_acc)]
        elif fate == "merged":
            stages = [("reported", t0), ("merged", t_acc)]
        else:
            stages = [("reported", t0), ("accepted", t_acc), ("registered", t_reg), ("dispatched", t_dis),
                      ("handling", t_ack), ("feedback", t_fb), ("verified", t_ver), ("closed", t_close)]
            if t_rate is not None:
                stages.append(("rated", t_rate))
        it.fate, it.accepted_at, it.end = fate, t_acc, (t_acc if fate != "normal" else t_close)
        reached = [(s, t) for s, t in stages if t <= now]
        status, updated = reached[-1]
        if fate == "merged" and status != "merged":  # not folded in yet: a pending duplicate 疑似重复
            assert it.merged_into is not None
            it.duplicate_of, it.merged_into = it.merged_into, None
        closed = status in ("closed", "rated", "rejected", "merged")

        # owner: the village's town; escalated to the district early (大事) or when overdue
        owner = town
        level = 0
        escalations: list[tuple[int, bool]] = []
        if t_esc is not None and t_esc <= now and status not in ("reported",):
            owner, level = district, 1
            escalations.append((t_esc, False))
        auto_esc_at = None
        if (not closed and level == 0 and handle_due is not None and status == "handling" and handle_due < now
                and rnd.random() < 0.5):
            owner, level, auto_esc_at = district, 1, handle_due
            escalations.append((handle_due, True))

        # current step and deadlines (as _set_step does)
        step = {"reported": "accept", "accepted": "dispatch", "registered": "dispatch", "dispatched": "acknowledge",
                "handling": "handle", "feedback": "verify"}.get(status)
        dispatched = status in ("dispatched", "handling", "feedback", "verified", "closed", "rated")
        accepted = status not in ("reported", "rejected", "merged")
        handle_due_at = handle_due if (dispatched or (kind == "petition" and accepted)) else None
        due: int | None = None
        if step == "accept":
            due = acc_due
        elif step == "dispatch":
            due = handle_due if kind == "petition" else dis_due
        elif step == "acknowledge":
            due = handle_due if kind == "petition" else ack_due
        elif step == "handle":
            due = handle_due
        elif step == "verify":
            due = ver_due
        if auto_esc_at is not None and step is not None:
            due = dl.at(kind, cat, pri, step, auto_esc_at) or due
        sla_state = "ok"
        if due is not None and not closed:
            sla_state = "overdue" if due < now else "due_soon" if due < now + 4 * 3600 else "ok"
        overdue_steps = 0
        for done, dd in ((t_acc, acc_due), (t_dis, dis_due), (t_ack, ack_due), (t_fb, handle_due), (t_ver, ver_due)):
            if dd is not None and done <= now and done > dd and accepted:
                overdue_steps += 1
        if sla_state == "overdue" or auto_esc_at is not None:
            overdue_steps += 1

        # texts
        spot = spot_names[it.spot] if it.spot >= 0 else None
        road = self.roads[village.code][(it.grid + int(abs(it.lon) * 1e6)) % 3]
        if spot:
            address = f"{spot}{_SPOT_SIDES[int(abs(it.lat) * 1e6) % len(_SPOT_SIDES)]}"
            place = spot
        else:
            address = f"{village.name}{road}{1 + int(abs(it.lon * 1e6 + it.lat * 1e6)) % 260}号"
            place = village.name
        cname = self.cat_name.get(cat, cat)
        data: dict[str, Any] = {}
        reporter: _Person | None = None
        channel: str | None = None
        if kind == "event":
            title = f"{place} {cname}"
            what = _EVENT_TEXT.get(cat, f"存在{cname}问题，请核实处置。")
            if src == "grid":
                desc = f"网格员巡查发现：{address}{what}"
            elif src == "citizen":
                desc = f"群众随手拍反映：{address}{what}"
                channel = "随手拍"
                reporter = self._person(district.code)
            else:
                desc = f"物联感知设备告警：{address}疑似{cname}，请核实。"
                channel = "物联感知"
                data["sensor"] = {"device": f"IOT-{it.grid:04d}-{(it.grid * 7 + len(cat)) % 10}",
                                  "alert": cname}
        elif kind == "hotline":
            rtype = _pick(rnd, self.hotline_types)
            verb = _HOTLINE_VERB.get(rtype, "反映")
            title = f"{place} {cname}{verb}"
            tail = _HOTLINE_TAIL.get(cat, f"{cname}相关问题")
            desc = f"市民来电{verb}：{address}{tail}，希望尽快处理。"
            channel = "12345"
            reporter = self._person(district.code)
            data["hotline"] = {"request_type": rtype or None, "request_type_name": self.cat_name.get(rtype, verb)}
        elif kind == "dispute":
            title = f"{place} {cname}"
            reason = _DISPUTE_REASON.get(cat, "相关权益")
            desc = f"{address}：双方当事人因{reason}问题发生纠纷，申请调解。"
            channel = {"grid": "网格排查", "visit": "来访", "police": "非警务警情分流", "hotline": "12345转办"}.get(src)
        else:
            matter = _PETITION_MATTER.get(cat, f"{cname}方面问题")
            title = f"{village.name} 关于{matter}的信访"
            desc = f"信访人反映{matter}问题，要求依法处理。"
            reporter = it.person
            channel = {"visit": "来访", "letter": "来信", "online": "网上信访"}.get(src)
            data["petition"] = {"channel": src, "matter": matter, "received_at": iso(_dt(t0) or self.now)}

        # departments
        dept_cat = self.cat_dept.get(cat) or self._dept_fallback(kind, cat)
        abbr = DEPT_ABBR.get(dept_cat, "CG")
        whistle = dispatched and rnd.random() < {"event": 0.04, "hotline": 0.02, "dispute": 0.08,
                                                 "petition": 0.1}[kind]
        admin = owner.code if (owner.kind == "district" or abbr in TOWN_LEVEL_DEPTS) else district.code
        primary = f"{admin}-{abbr}"
        if primary not in self.depts:
            primary = f"{district.code}-{abbr}"
        depts = [primary]
        if whistle:
            partners = [p for p in _WHISTLE_PARTNERS if p != abbr]
            rnd.shuffle(partners)
            for p in partners[: _ri(rnd, 1, 2)]:
                code = f"{owner.code}-{p}" if f"{owner.code}-{p}" in self.depts else f"{district.code}-{p}"
                if code in self.depts and code not in depts:
                    depts.append(code)
            if len(depts) < 2:
                whistle = False
        mode = "whistle" if whistle else "dispatch"

        row = it.row
        row.update(
            number=number, kind=kind, status=status, title=title[:200], description=desc, category_code=cat,
            priority=pri, source=src, channel=channel, lon=it.lon, lat=it.lat, address=address[:200],
            grid_code=self.geo.codes[it.grid], unit_code=village.code, scope_path=self.path[village.code],
            owner_code=owner.code, owner_path=self.path[owner.code],
            reporter_name=reporter.name if reporter else None, reporter_phone=reporter.phone if reporter else None,
            reporter_id_number=reporter.id_number if (reporter and kind == "petition") else None,
            created_by=None, created_at=_dt(t0), updated_at=_dt(updated), received_at=_dt(t0),
            accepted_at=_dt(t_acc) if accepted else None,
            closed_at=_dt({"rejected": t_acc, "merged": t_acc}.get(status, t_close)) if closed else None,
            step=step, due_at=_dt(due) if step else None, handle_due_at=_dt(handle_due_at),
            sla_state=sla_state, overdue_steps=overdue_steps, escalation_level=level, extensions=0,
            whistle=whistle and dispatched, supervised=False,
            rating=None, replied_at=None, reply_text=None, merged_into=None, repeat_of=None, data=data, version=1,
        )
        rating = None
        if status == "rated":
            late = overdue_steps > 0
            rating = _pick(rnd, _RATINGS_LATE if late else _RATINGS)
            row["rating"] = rating
        if kind == "petition" and (status in ("closed", "rated", "rejected")
                                   or (status == "verified" and t_reply <= now)):
            replied = t_acc if status == "rejected" else t_reply
            row["replied_at"] = _dt(replied)
            row["reply_text"] = _REJECT_NOTE["petition"] if status == "rejected" else rnd.choice(_PETITION_REPLY)
        elif kind == "hotline" and status in ("closed", "rated"):
            row["replied_at"] = _dt(t_ver)
            row["reply_text"] = "您好，您反映的问题已交办处理，" + rnd.choice(_FEEDBACK["hotline"])

        # parties
        if kind == "petition" and it.person is not None:
            p = it.person
            it.parties.append({"role": "petitioner", "name": p.name, "id_number": p.id_number, "phone": p.phone,
                               "address": p.address})
        elif kind == "dispute":
            a, b = self._person(district.code), self._person(district.code)
            it.parties.append({"role": "applicant", "name": a.name, "id_number": a.id_number, "phone": a.phone,
                               "address": a.address})
            it.parties.append({"role": "respondent", "name": b.name,
                               "id_number": b.id_number if rnd.random() < 0.6 else None, "phone": b.phone,
                               "address": b.address})
            risk = _pick(rnd, _RISK)
            sessions = []
            visits = []
            if status in ("handling", "feedback", "verified", "closed", "rated"):
                end = min(t_fb, now)
                n_sessions = 1 + (rnd.random() < 0.45) + (rnd.random() < 0.15)
                for k in range(n_sessions):
                    at = t_ack + int((end - t_ack) * (k + 1) / (n_sessions + 0.5))
                    last = k == n_sessions - 1 and t_fb <= now
                    sessions.append({"at": iso(_dt(at) or self.now), "mediator": f"mediator_{town.code}",
                                     "result": "agreement" if last else "continued"})
                if t_close <= now and status in ("closed", "rated"):
                    v = t_close + _ri(rnd, 3, 20) * _DAY
                    if v <= now:
                        visits.append({"at": iso(_dt(v) or self.now), "by": f"mediator_{town.code}",
                                       "note": "回访当事人，调解协议履行良好"})
            data["dispute"] = {"risk_level": risk, "mediation_channel": _pick(rnd, _CHANNELS),
                               "sessions": sessions, "visits": visits}
            if risk == "high" and row["priority"] in ("normal", "low"):
                row["priority"] = "high"

        # assignments
        if dispatched:
            last_k = len(depts) - 1
            for k, code in enumerate(depts):
                ta = t_ack + k * _ri(rnd, 300, 3 * 3600)
                tr = max(t_fb - (last_k - k) * _ri(rnd, 600, 6 * 3600), ta + 60)
                if status == "dispatched" or ta > now:
                    state = "assigned"
                elif tr <= now and (status != "handling" or k < last_k):
                    state = "reported"
                else:
                    state = "acknowledged"
                it.assignments.append({
                    "department_code": code, "mode": mode, "state": state, "assigned_at": _dt(t_dis),
                    "ack_due_at": _dt(ack_due),
                    "acknowledged_at": _dt(ta) if state != "assigned" else None,
                    "reported_at": _dt(tr) if state == "reported" else None,
                    "report": rnd.choice(_FEEDBACK[kind]) if state == "reported" else None,
                    "ack_overdue": state == "assigned" and ack_due is not None and ack_due < now,
                })

        # supervision 督办: a leader flags some slow or sensitive items
        sup_p = {"event": 0.003, "hotline": 0.004, "dispute": 0.02, "petition": 0.03}[kind]
        if overdue_steps:
            sup_p *= 6
        if dispatched and handle_due is not None and rnd.random() < sup_p:
            issued = t_dis + int((handle_due - t_dis) * rnd.uniform(0.3, 0.9))
            if issued < now:
                sdue = dl.at(kind, cat, pri, "supervision", issued) or issued + 3 * _DAY
                done = t_fb if t_fb <= now else None
                state = "resolved" if done is not None else ("overdue" if sdue < now else "open")
                it.supervision = {
                    "issued_by": f"leader_{district.code}", "unit_code": district.code, "scope_path": row["scope_path"],
                    "note": rnd.choice(("请加快办理进度", "群众反映强烈，限期办结", "请主要负责同志亲自督办")),
                    "issued_at": _dt(issued), "due_at": _dt(sdue),
                    "resolved_at": _dt(max(done, issued + 60)) if done is not None else None, "state": state,
                }
                row["supervised"] = state != "resolved"

        # timeline
        tl = it.timeline
        dispatcher = f"dispatcher_{owner.code}"

        def add(action: str, at: int, actor: str, role: str | None, unit: str | None, frm: str | None,
                to: str | None, note: str | None = None, extra: dict[str, Any] | None = None) -> None:
            if at <= now:
                tl.append({"at": _dt(at), "actor": actor, "role": role, "unit_code": unit, "action": action,
                           "from_status": frm, "to_status": to, "note": note, "data": extra or {}})

        if kind == "event" and src == "grid":
            add("report", t0, f"grid_{village.code}", "grid_worker", village.code, None, "reported", None,
                {"source": src, "grid": row["grid_code"]})
        elif kind == "hotline":
            add("report", t0, "hotline_12345", "dispatcher", self.city.units[0].code, None, "reported", None,
                {"source": src, "grid": row["grid_code"]})
        else:
            add("report", t0, f"dispatcher_{town.code}" if kind in ("dispute", "petition") else src,
                "dispatcher" if kind in ("dispute", "petition") else None,
                town.code if kind in ("dispute", "petition") else None, None, "reported", None,
                {"source": src, "grid": row["grid_code"]})
        town_disp = f"dispatcher_{town.code}"
        if fate == "rejected":
            add("reject", t_acc, town_disp, "dispatcher", town.code, "reported", "rejected", _REJECT_NOTE[kind])
            if kind == "petition":
                add("reply", t_acc, town_disp, "dispatcher", town.code, "rejected", "rejected", None, {"replied": True})
            return
        if fate == "merged":
            add("merge", t_acc, town_disp, "dispatcher", town.code, "reported", "merged", "与已有工单重复，并单处理",
                {"target_index": it.merged_into})
            return
        if full:
            add("accept", t_acc, town_disp, "dispatcher", town.code, "reported", "accepted")
        for at, auto in escalations:
            if not auto:
                add("escalate", at, town_disp, "dispatcher", town.code, "accepted", "accepted",
                    "事项重大复杂，报请区级协调", {"from_owner": town.code, "to_owner": district.code, "auto": False})
        if full:
            add("register", t_reg, dispatcher, "dispatcher", owner.code if t_esc is not None else town.code,
                "accepted", "registered")
        if dispatched:
            add(mode, t_dis, dispatcher, "dispatcher", owner.code, "registered", "dispatched", None,
                {"departments": depts, "mode": mode})
        for a in it.assignments:
            handler = f"handler_{a['department_code'].replace('-', '_').lower()}"
            if full and a["acknowledged_at"] is not None:
                add("acknowledge", int(a["acknowledged_at"].timestamp()), handler, "department_handler",
                    a["department_code"], "dispatched", "handling", None, {"department": a["department_code"]})
        for at, auto in escalations:
            if auto:
                add("escalate", at, "sla-tick", "system", None, "handling", "handling", "超时自动上报",
                    {"from_owner": town.code, "to_owner": district.code, "auto": True})
        if it.supervision is not None:
            s = it.supervision
            add("supervise", int(s["issued_at"].timestamp()), s["issued_by"], "leader", district.code, "handling",
                "handling", s["note"], {"due_at": iso(s["due_at"])})
        for k, a in enumerate(it.assignments):
            if a["reported_at"] is not None and (full or k == len(it.assignments) - 1):
                last = k == len(it.assignments) - 1
                add("feedback", int(a["reported_at"].timestamp()),
                    f"handler_{a['department_code'].replace('-', '_').lower()}", "department_handler",
                    a["department_code"], "handling", "feedback" if last else "handling", a["report"],
                    {"department": a["department_code"]})
        if full:
            add("verify", t_ver, dispatcher, "dispatcher", owner.code, "feedback", "verified", None, {"passed": True})
        if row["replied_at"] is not None:
            add("reply", int(row["replied_at"].timestamp()), dispatcher, "dispatcher", owner.code, "verified",
                "verified", None, {"replied": True})
        if status in ("closed", "rated"):
            add("close", t_close, dispatcher, "dispatcher", owner.code, "verified", "closed")
        if rating is not None and t_rate is not None:
            add("rate", t_rate, "reporter", None, None, "closed", "rated", None, {"rating": rating})
        tl.sort(key=lambda e: e["at"])

    def _priority(self, it: _Item) -> str:
        r = self.rnd.random()
        if it.kind == "event":
            if it.cat.startswith("EV-04") or it.cat in ("PS-05-01", "PS-01-02", "PS-01-03", "PS-02-01"):
                return "urgent" if r < 0.3 else "high" if r < 0.7 else "normal"
            return "low" if r < 0.1 else "normal" if r < 0.92 else "high" if r < 0.99 else "urgent"
        if it.kind == "hotline":
            if it.cat == "HL-TOPIC-15-02":
                return "high" if r < 0.5 else "normal"
            return "low" if r < 0.05 else "normal" if r < 0.9 else "high" if r < 0.98 else "urgent"
        if it.kind == "dispute":
            return "low" if r < 0.15 else "normal" if r < 0.92 else "high" if r < 0.99 else "urgent"
        return "normal" if r < 0.96 else "high" if r < 0.99 else "urgent"

    def _person(self, district: str) -> _Person:
        people = self.people.get(district) or next(iter(self.people.values()))
        return people[self.rnd.randrange(len(people))]

    @staticmethod
    def _dept_fallback(kind: str, cat: str) -> str:
        best = ""
        for prefix in _DEPT_BY_PREFIX:
            if cat.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return _DEPT_BY_PREFIX[best] if best else _FALLBACK_DEPT[kind]


# --------------------------------------------------------------------------- loading


class _BulkInsert:
    """``INSERT`` of many rows with the same keys, each value converted by its column type's own
    bind processor: the rows of ``session.execute(insert(table), rows)`` without its per-row
    overhead (which dominates at a million rows). SQLite gets one ``executemany`` of a statement
    compiled once; PostgreSQL (psycopg) gets ``COPY ... FROM STDIN`` in the same transaction."""

    def __init__(self, session: Session, table: Table, keys: Sequence[str]) -> None:
        self.session = session
        dialect = session.get_bind().dialect
        self.copy = dialect.name == "postgresql" and dialect.driver == "psycopg"
        compiled = insert(table).compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        self.sql = compiled.string.split(" RETURNING ")[0]
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup or []) if self.positional and not self.copy else list(keys)
        missing = set(order) - set(keys)
        if missing:
            raise ValueError(f"insert into {table.name} needs {sorted(missing)}")
        self.keys = order
        self.procs = [table.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in order]
        quote = dialect.identifier_preparer.quote
        self.copy_sql = f"COPY {quote(table.name)} ({', '.join(quote(k) for k in order)}) FROM STDIN"

    def __call__(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        pairs = list(zip(self.keys, self.procs, strict=True))
        conn = self.session.connection()
        if self.copy:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row([v if (v := row[k]) is None or p is None else p(v) for k, p in pairs])
            cursor.close()
        elif self.positional:
            tuples = [tuple(v if (v := row[k]) is None or p is None else p(v) for k, p in pairs) for row in rows]
            conn.exec_driver_sql(self.sql, tuples)  # type: ignore[arg-type]
        else:
            dicts = [{k: v if (v := row[k]) is None or p is None else p(v) for k, p in pairs} for row in rows]
            conn.exec_driver_sql(self.sql, dicts)  # type: ignore[arg-type]


def load_history(session: Session, city: DemoCity, *, seed: int = 1, now: datetime | None = None,
                 step: Step = _noop_step, total: int | None = None, months: int | None = None) -> HistoryReport:
    """Write the demo history for ``city`` (idempotent: nothing when it was loaded before).

    ``total`` and ``months`` default from the city's size (``HISTORY_SIZES``); the history ends
    at ``now`` (default: the current time). Deterministic for a given ``seed`` and ``now``.
    """
    done = meta.get(session, META_KEY)
    if done is not None:
        return HistoryReport(items=int(done.get("items", 0)), by_kind=dict(done.get("by_kind", {})),
                             by_status=dict(done.get("by_status", {})), hot_spots=list(done.get("hot_spots", [])),
                             skipped=True)
    config.seed_catalogues(session)
    now = as_utc(now or utcnow()).replace(microsecond=0)
    size_total, size_months = HISTORY_SIZES.get(city.size, HISTORY_SIZES["small"])
    total = size_total if total is None else total
    months = size_months if months is None else months

    tick = step("history: plan 历史工单规划", 2)
    planner = _Planner(session, city, seed=seed, now=now, total=total, months=months)
    tick(1)
    items, spots = planner.plan()
    tick(1)
    planner.build(items, spots, len(items) <= FULL_TIMELINE_MAX, step("history: lifecycle 生命周期", len(items)))

    # work items, in chunks, ids back in order
    wi = cast(Table, WorkItem.__table__)
    existing = set(session.execute(select(WorkItem.number)).scalars())
    # explicit ids (the history is written in one go, by one job): no RETURNING round trips
    base = session.execute(select(func.coalesce(func.max(WorkItem.id), 0))).scalar_one()
    ids = [base + 1 + i for i in range(len(items))]
    tick = step("work items 工单", len(items))
    write_items: _BulkInsert | None = None
    for start in range(0, len(items), CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, len(items))):
            row = items[i].row
            if row["number"] in existing:  # a live item drew the same number: vanishingly rare
                row["number"] += "D"
            row["id"] = ids[i]
            row["merged_into"] = ids[items[i].merged_into] if items[i].merged_into is not None else None
            row["repeat_of"] = ids[items[i].repeat_of] if items[i].repeat_of is not None else None
            rows.append(row)
        if write_items is None:
            write_items = _BulkInsert(session, wi, list(rows[0]))
        write_items(rows)
        tick(len(rows))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT setval(pg_get_serial_sequence('work_items', 'id'), "
                             "(SELECT max(id) FROM work_items))"))

    # children
    n_parties = n_assign = n_tl = n_sup = 0
    tick = step("timeline 时间线", len(items))
    tables = {name: cast(Table, model.__table__) for name, model in (
        ("p", Party), ("a", Assignment), ("t", TimelineEntry), ("s", Supervision), ("d", DuplicateLink))}
    buf: dict[str, list[dict[str, Any]]] = {k: [] for k in tables}
    writers: dict[str, _BulkInsert] = {}

    def flush(force: bool = False) -> None:
        for k, rows in buf.items():
            if rows and (force or len(rows) >= CHUNK):
                if k not in writers:
                    writers[k] = _BulkInsert(session, tables[k], list(rows[0]))
                writers[k](rows)
                rows.clear()

    for n, (item_id, it) in enumerate(zip(ids, items, strict=True), start=1):
        for p in it.parties:
            buf["p"].append({"item_id": item_id, **p})
        for a in it.assignments:
            buf["a"].append({"item_id": item_id, **a})
        for e in it.timeline:
            if "target_index" in e["data"]:
                e["data"] = {"target": ids[e["data"]["target_index"]]}
            buf["t"].append({"item_id": item_id, **e})
        if it.supervision is not None:
            buf["s"].append({"item_id": item_id, **it.supervision})
        if it.duplicate_of is not None:
            other = items[it.duplicate_of]
            buf["d"].append({"item_id": item_id, "candidate_id": ids[it.duplicate_of], "state": "pending",
                             "distance_m": round(haversine_m(it.lon, it.lat, other.lon, other.lat), 1)})
        n_parties += len(it.parties)
        n_assign += len(it.assignments)
        n_tl += len(it.timeline)
        n_sup += it.supervision is not None
        if n % CHUNK == 0:
            flush()
            tick(CHUNK)
    flush(force=True)
    tick(len(items) % CHUNK)

    by_kind = {k: 0 for k in _KINDS}
    by_status: Counter[str] = Counter()
    for it in items:
        by_kind[it.kind] += 1
        by_status[it.row["status"]] += 1
    hot = [HotSpot(s.name, s.theme, planner.geo.codes[s.grid], planner.grid_village[s.grid], s.spots[0][0],
                   s.spots[0][1], s.emerging, _dt(planner.day0_t + s.start_day * _DAY) or now, s.count,
                   tuple(c for c, _ in s.cats)).as_json() for s in spots]
    report = HistoryReport(items=len(items), by_kind=by_kind, by_status=dict(sorted(by_status.items())),
                           parties=n_parties, assignments=n_assign, timeline=n_tl, supervisions=n_sup, hot_spots=hot)
    counts = {"items": report.items, "by_kind": report.by_kind, "by_status": report.by_status,
              "parties": n_parties, "assignments": n_assign, "timeline": n_tl, "supervisions": n_sup}
    meta.put(session, META_KEY, {**counts, "seed": seed, "now": iso(now), "months": months,
                                 "size": city.size, "hot_spots": hot})
    audit.record(session, Principal.system("demo-loader"), "demo.history", object_type="job",
                 object_id=f"demo-history-{seed}", detail=counts)
    session.flush()
    return report
