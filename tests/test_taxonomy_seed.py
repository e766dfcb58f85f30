"""The seed catalogues (taxonomy.json, sla.json) that work items are classified and timed by.

They are editable data, so these tests guard their shape and internal consistency, not the
exact entries."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from importlib import resources
from typing import Any

import pytest

SEED_PACKAGE = "shiyu.domains.items.seed"

KINDS = {"event", "dispute", "petition", "hotline"}
DEPARTMENTS = {
    "public_security",
    "urban_management",
    "market_regulation",
    "housing",
    "justice",
    "civil_affairs",
    "emergency",
    "environment",
}
PS_DOMAINS = {
    "hazchem",
    "fire",
    "traffic",
    "construction",
    "special_equipment",
    "public_health",
    "food_drug",
    "environment",
    "disaster",
    "logistics",
    "ride_hailing",
}
PREFIX_KIND = {"EV": "event", "PS": "event", "DS": "dispute", "PT": "petition", "HL": "hotline"}
CODE_RE = re.compile(r"^[A-Z]{2}(-[0-9A-Z]{1,6}){1,3}$")
DURATION_RE = re.compile(r"^\d+(m|h|d|wd)$")
STEPS = {"accept", "dispatch", "acknowledge", "handle", "verify", "extension", "supervision"}
REQUIRED_STEPS = {"accept", "dispatch", "acknowledge", "handle", "verify"}
PRIORITIES = {"low", "normal", "high", "urgent"}

CATEGORY_KEYS: dict[str, tuple[type, ...]] = {
    "code": (str,),
    "name": (str,),
    "name_en": (str,),
    "kind": (str,),
    "parent": (str, type(None)),
    "public": (bool,),
    "domain": (str, type(None)),
    "department": (str, type(None)),
}
RULE_KEYS: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "category": (str, type(None)),
    "priority": (str, type(None)),
    "step": (str,),
    "duration": (str,),
}
# Minimum sensible catalogue size per kind / per prefix.
MIN_PER_KIND = {"event": 60, "dispute": 15, "petition": 15, "hotline": 15}
MIN_PER_PREFIX = {"EV": 50, "PS": 11, "DS": 15, "PT": 15, "HL": 15}
# What we never build (DOMAIN.md): nothing about watching political or religious activity or people.
FORBIDDEN = ("人脸", "face recognition", "宗教", "religio", "统一战线", "维稳", "非法集会", "电子围栏", "布控")


def _load(name: str) -> dict[str, Any]:
    text = resources.files(SEED_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


@pytest.fixture(scope="module")
def taxonomy() -> dict[str, Any]:
    return _load("taxonomy.json")


@pytest.fixture(scope="module")
def categories(taxonomy: dict[str, Any]) -> list[dict[str, Any]]:
    return taxonomy["categories"]


@pytest.fixture(scope="module")
def by_code(categories: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["code"]: c for c in categories}


@pytest.fixture(scope="module")
def sla() -> dict[str, Any]:
    return _load("sla.json")


def _depth(code: str, by_code: dict[str, dict[str, Any]]) -> int:
    depth, seen = 1, {code}
    parent = by_code[code]["parent"]
    while parent is not None:
        assert parent not in seen, f"parent cycle at {code}"
        seen.add(parent)
        depth += 1
        parent = by_code[parent]["parent"]
    return depth


# ---------------------------------------------------------------- taxonomy.json


def test_taxonomy_header(taxonomy: dict[str, Any]) -> None:
    assert taxonomy["version"] == 1
    assert isinstance(taxonomy["source_note"], str) and len(taxonomy["source_note"]) > 40
    assert isinstance(taxonomy["categories"], list)
    assert 0 < len(taxonomy["categories"]) < 600


def test_category_schema(categories: list[dict[str, Any]]) -> None:
    for c in categories:
        for key, types in CATEGORY_KEYS.items():
            assert key in c, f"{c.get('code')}: missing {key}"
            assert isinstance(c[key], types), f"{c['code']}: {key} has type {type(c[key]).__name__}"
        assert isinstance(c.get("description", ""), str)
        assert c["kind"] in KINDS, c["code"]
        assert c["name"].strip() and c["name_en"].strip(), c["code"]
        assert len(c["code"]) <= 32 and len(c["name"]) <= 100 and len(c["name_en"]) <= 200, c["code"]


def test_codes_unique_and_well_formed(categories: list[dict[str, Any]]) -> None:
    counts = Counter(c["code"] for c in categories)
    assert not [code for code, n in counts.items() if n > 1]
    for c in categories:
        assert CODE_RE.fullmatch(c["code"]), c["code"]
        assert c["code"].isascii() and c["code"] == c["code"].upper()


def test_prefix_matches_kind(categories: list[dict[str, Any]]) -> None:
    for c in categories:
        assert PREFIX_KIND.get(c["code"][:2]) == c["kind"], c["code"]


def test_parents_exist_same_kind_and_depth(by_code: dict[str, dict[str, Any]]) -> None:
    for code, c in by_code.items():
        parent = c["parent"]
        if parent is None:
            assert code.count("-") == 1, f"{code}: a root has a one-segment code"
            continue
        assert parent in by_code, f"{code}: unknown parent {parent}"
        assert by_code[parent]["kind"] == c["kind"], code
        assert code.startswith(parent + "-") and code.count("-") == parent.count("-") + 1, code
        assert _depth(code, by_code) <= 3, code


def test_public_entries_have_public_parents(by_code: dict[str, dict[str, Any]]) -> None:
    for code, c in by_code.items():
        if c["public"] and c["parent"] is not None:
            assert by_code[c["parent"]]["public"], f"{code} is public under a non-public parent"


def test_every_kind_and_prefix_has_enough_entries(categories: list[dict[str, Any]]) -> None:
    per_kind = Counter(c["kind"] for c in categories)
    per_prefix = Counter(c["code"][:2] for c in categories)
    for kind, n in MIN_PER_KIND.items():
        assert per_kind[kind] >= n, (kind, per_kind[kind])
    for prefix, n in MIN_PER_PREFIX.items():
        assert per_prefix[prefix] >= n, (prefix, per_prefix[prefix])


def test_classic_city_management_classes(by_code: dict[str, dict[str, Any]]) -> None:
    names = {c["name"] for c in by_code.values() if c["parent"] is None and c["code"].startswith("EV-")}
    assert {"市容环境", "宣传广告", "施工管理", "突发事件", "街面秩序"} <= names
    subclasses = {c["name"] for c in by_code.values() if c["parent"] and c["kind"] == "event"}
    assert {"私搭乱建", "燃气管道破裂", "道路积水", "无照经营游商", "非法小广告"} <= subclasses


def test_public_safety_domains(categories: list[dict[str, Any]], by_code: dict[str, dict[str, Any]]) -> None:
    roots = [c for c in categories if c["code"].startswith("PS-") and c["parent"] is None]
    assert {c["domain"] for c in roots} == PS_DOMAINS
    assert len(roots) == len(PS_DOMAINS)
    for c in categories:
        if c["code"].startswith("PS-"):
            assert c["kind"] == "event" and c["domain"] in PS_DOMAINS, c["code"]
            if c["parent"] is not None:
                assert c["domain"] == by_code[c["parent"]]["domain"], c["code"]
        else:
            assert c["domain"] is None, c["code"]


def test_departments_allowed(categories: list[dict[str, Any]]) -> None:
    for c in categories:
        assert c["department"] is None or c["department"] in DEPARTMENTS, (c["code"], c["department"])
    assert {c["department"] for c in categories} - {None} == DEPARTMENTS


def test_names_unique_among_siblings(categories: list[dict[str, Any]]) -> None:
    siblings: dict[tuple[str, str | None], Counter[str]] = defaultdict(Counter)
    for c in categories:
        siblings[(c["kind"], c["parent"])][c["name"]] += 1
    for key, names in siblings.items():
        assert not [n for n, k in names.items() if k > 1], key


def test_public_flags(by_code: dict[str, dict[str, Any]]) -> None:
    hotline = [c for c in by_code.values() if c["kind"] == "hotline"]
    assert all(c["public"] for c in hotline)
    for name in ("咨询", "求助", "投诉", "举报", "建议"):
        assert any(c["name"] == name for c in hotline), name
    classic_sub = [c for c in by_code.values() if re.fullmatch(r"EV-0[1-5]-\d\d", c["code"])]
    assert sum(c["public"] for c in classic_sub) >= len(classic_sub) - 3
    mass = [c for c in by_code.values() if c["name"] == "群发性事件"]
    assert mass and not any(c["public"] for c in mass)
    assert not any(c["public"] for c in by_code.values() if c["kind"] == "petition")


def test_nothing_we_never_build(categories: list[dict[str, Any]]) -> None:
    for c in categories:
        text = " ".join(str(c.get(k) or "") for k in ("name", "name_en")).lower()
        assert not [w for w in FORBIDDEN if w.lower() in text], c["code"]


# ---------------------------------------------------------------- sla.json


def _hours(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(m|h|d|wd)", duration)
    assert m, duration
    n, unit = int(m.group(1)), m.group(2)
    return {"m": n / 60, "h": n, "d": n * 24, "wd": n * 24 * 7 / 5}[unit]


def test_sla_header(sla: dict[str, Any]) -> None:
    assert sla["version"] == 1
    assert isinstance(sla["note"], str) and len(sla["note"]) > 40
    assert isinstance(sla["rules"], list) and sla["rules"]


def test_sla_rule_schema(sla: dict[str, Any], by_code: dict[str, dict[str, Any]]) -> None:
    for r in sla["rules"]:
        for key, types in RULE_KEYS.items():
            assert key in r, r
            assert isinstance(r[key], types), r
        assert r["kind"] in KINDS, r
        assert r["step"] in STEPS, r
        assert r["priority"] is None or r["priority"] in PRIORITIES, r
        assert DURATION_RE.fullmatch(r["duration"]), r
        assert int(re.match(r"\d+", r["duration"]).group()) > 0, r
        if r["category"] is not None:
            assert r["category"] in by_code, r
            assert by_code[r["category"]]["kind"] == r["kind"], r


def test_sla_rules_unique(sla: dict[str, Any]) -> None:
    keys = Counter((r["kind"], r["category"], r["priority"], r["step"]) for r in sla["rules"])
    assert not [k for k, n in keys.items() if n > 1]


def _defaults(sla: dict[str, Any], priority: str | None = None) -> dict[tuple[str, str], str]:
    return {
        (r["kind"], r["step"]): r["duration"]
        for r in sla["rules"]
        if r["category"] is None and r["priority"] == priority
    }


def test_every_kind_has_default_steps(sla: dict[str, Any]) -> None:
    defaults = _defaults(sla)
    for kind in KINDS:
        missing = {s for s in REQUIRED_STEPS if (kind, s) not in defaults}
        assert not missing, (kind, missing)


def test_petition_legal_limits(sla: dict[str, Any]) -> None:
    defaults = _defaults(sla)
    assert defaults[("petition", "accept")] == "15d"
    assert defaults[("petition", "handle")] == "60d"
    assert defaults[("petition", "extension")] == "30d"


def test_urgent_is_tighter_and_low_looser(sla: dict[str, Any]) -> None:
    defaults = _defaults(sla)
    for r in sla["rules"]:
        base = defaults.get((r["kind"], r["step"]))
        if r["category"] is not None or base is None:
            continue
        if r["priority"] in ("urgent", "high"):
            assert _hours(r["duration"]) <= _hours(base), r
        if r["priority"] == "low":
            assert _hours(r["duration"]) >= _hours(base), r
    urgent = _defaults(sla, "urgent")
    for kind in ("event", "dispute", "hotline"):
        assert (kind, "handle") in urgent, kind


def test_emergency_categories_are_tight(sla: dict[str, Any], by_code: dict[str, dict[str, Any]]) -> None:
    gas = next(c["code"] for c in by_code.values() if c["name"] == "燃气管道破裂")
    rules = {(r["step"]): r["duration"] for r in sla["rules"] if r["category"] == gas and r["priority"] is None}
    assert _hours(rules["acknowledge"]) <= 0.5
    assert _hours(rules["handle"]) <= 4
    flooded = next(c["code"] for c in by_code.values() if c["name"] == "道路积水")
    assert any(r["category"] == flooded for r in sla["rules"])
