"""The law of the Open311 adapter 开放311接口规则: what GeoReport v2 allows, how our lifecycle
reads in Open311's terms, and how a partner's input is checked.

Pure data and pure functions: no database, no web. Every refusal is an ``Open311Error``
carrying the HTTP status the spec asks for (404 unknown jurisdiction, service, request or
token; 403 missing or bad key; 429 flood; 400 otherwise) and a message code whose texts
(English and Chinese) live in ``MESSAGES``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from shiyu.domains.items.rules import OPEN_STATES
from shiyu.kit.errors import DomainError
from shiyu.kit.pii import scrub_text

SPECIFICATION: Final = "http://wiki.open311.org/GeoReport_v2"
UPDATES_SPECIFICATION: Final = "https://github.com/mysociety/fixmystreet/wiki/Open311-FMS---Complete-Spec"
#: Response formats 格式 and their media types (XML is the spec's required format).
FORMATS: Final = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
#: When the service list or its definitions last changed in a way partners must know about.
CHANGESET: Final = "2026-11-29T00:00:00+08:00"

#: GET requests / servicerequestupdates: default and largest date span, and most results.
MAX_SPAN: Final = timedelta(days=90)
MAX_RESULTS: Final = 1000
MAX_IDS: Final = 1000
#: Input limits. The description limit is the spec's; the others are our columns'.
MAX_DESCRIPTION: Final = 4000
MAX_ADDRESS: Final = 200
MAX_NAME: Final = 50
MAX_EMAIL: Final = 254
MAX_MEDIA_URL: Final = 500
MAX_STRING: Final = 200
MAX_TEXT: Final = 4000
#: Nearby open requests of the same service shown before a citizen submits (FixMyStreet-style).
NEARBY_RADIUS_M: Final = 200.0
NEARBY_WINDOW: Final = timedelta(days=30)

DATATYPES: Final = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")

#: Open311's own two states, from our lifecycle: open while the item is being worked on.
PUBLIC_STATUSES: Final = ("open", "closed")

#: mySociety's extended states (Open311-FMS "Additional states"), one per lifecycle state.
EXTENDED_STATUS: Final = {
    "reported": "OPEN",  # 上报
    "accepted": "INVESTIGATING",  # 受理
    "registered": "INVESTIGATING",  # 立案
    "dispatched": "ACTION_SCHEDULED",  # 派遣
    "handling": "IN_PROGRESS",  # 处置
    "feedback": "IN_PROGRESS",  # 反馈
    "verified": "IN_PROGRESS",  # 核查 (closes next)
    "closed": "FIXED",  # 结案
    "rated": "FIXED",  # 评价
    "rejected": "NO_FURTHER_ACTION",  # 不予受理
    "merged": "DUPLICATE",  # 并单
}

#: Public texts of a status change 公开进度说明 (zh-CN, en). Internal remarks never leave
#: the workbench: an update says only what this table says.
UPDATE_TEXT: Final = {
    "reported": ("已收到您的诉求，等待受理。", "Your request was received and awaits acceptance."),
    "accepted": ("已受理。", "Accepted."),
    "registered": ("已立案，即将派遣至职能部门。", "Registered; it will be assigned to a department."),
    "dispatched": ("已派遣至职能部门处置。", "Assigned to the responsible department."),
    "handling": ("职能部门正在处置。", "The department is working on it."),
    "feedback": ("职能部门已反馈处置结果，等待核查。", "The department reported back; the result is being checked."),
    "verified": ("处置结果已核查。", "The result was checked."),
    "closed": ("已办结。", "Closed: the issue was handled."),
    "rated": ("已办结并完成评价。", "Closed and rated."),
    "rejected": ("不予受理。", "Not accepted."),
    "merged": ("与其他诉求合并办理。", "Handled together with another request (duplicate)."),
    "reply": ("已答复诉求人。", "A reply was sent to the reporter."),
}


def open311_status(state: str) -> str:
    """``open`` or ``closed``: Open311's two states, from a lifecycle state."""
    return "open" if state in OPEN_STATES else "closed"


def statuses_for(public: str) -> frozenset[str]:
    """Lifecycle states behind one Open311 state."""
    return frozenset(s for s in EXTENDED_STATUS if open311_status(s) == public)


# --------------------------------------------------------------------------- errors

MESSAGES: Final[dict[str, tuple[str, str]]] = {
    # code: (en, zh-CN); placeholders are filled from the error's params.
    "format": ("Unknown format {fmt}: use xml or json", "不支持的格式 {fmt}：请使用 xml 或 json"),
    "route": ("No such resource", "资源不存在"),
    "method": ("Method not allowed", "不支持该请求方法"),
    "jurisdiction_unknown": ("jurisdiction_id {id} not found", "辖区 {id} 不存在"),
    "jurisdiction_required": ("jurisdiction_id is required", "须提供 jurisdiction_id"),
    "service_unknown": ("service_code {code} not found", "服务代码 {code} 不存在"),
    "service_required": ("service_code is required", "须提供 service_code"),
    "request_unknown": ("service_request_id {id} not found", "服务请求 {id} 不存在"),
    "token_unknown": ("token not found", "查询码不存在"),
    "api_key_missing": ("api_key is required -- can't proceed with create_request.",
                        "须提供 api_key，无法提交服务请求。"),
    "api_key_invalid": ("Invalid api_key received -- can't proceed with create_request.",
                        "api_key 无效，无法提交服务请求。"),
    "rate_limited": ("Too many requests: retry after {seconds} seconds", "请求过于频繁，请 {seconds} 秒后重试"),
    "body_form": ("Send the request form-encoded (application/x-www-form-urlencoded)",
                  "请以表单编码（application/x-www-form-urlencoded）提交"),
    "field_repeated": ("{field} was given more than once", "{field} 重复提交"),
    "field_type": ("{field} must be text", "{field} 须为文本"),
    "location_required": ("Give lat and long, or address_string", "须提供经纬度（lat、long）或地址（address_string）"),
    "location_pair": ("Give lat and long together", "经纬度须同时提供"),
    "location_number": ("lat and long must be WGS84 decimal degrees", "经纬度须为 WGS84 十进制度数"),
    "location_outside": ("The location lies outside jurisdiction {id}", "该位置不在辖区 {id} 内"),
    "too_long": ("{field} may be at most {max} characters", "{field} 最多 {max} 个字符"),
    "control_chars": ("{field} contains control characters", "{field} 含有控制字符"),
    "email_invalid": ("email is not an e-mail address", "email 不是有效的电子邮箱地址"),
    "phone_invalid": ("phone must be a mainland China mobile number", "phone 须为有效的手机号码"),
    "media_url_invalid": ("media_url must be an http or https URL", "media_url 须为 http 或 https 地址"),
    "attribute_malformed": ("Malformed attribute parameter {name}", "属性参数 {name} 格式不正确"),
    "attribute_unknown": ("Unknown attribute {code} for service {service}", "服务 {service} 没有属性 {code}"),
    "attribute_fixed": ("Attribute {code} is information only and takes no value", "属性 {code} 仅为说明，不接受取值"),
    "attribute_required": ("Attribute {code} is required", "须填写属性 {code}"),
    "attribute_single": ("Attribute {code} takes a single value", "属性 {code} 只能有一个值"),
    "attribute_type": ("Attribute {code} must be a {datatype}", "属性 {code} 须为 {datatype}"),
    "attribute_value": ("Attribute {code} has no value {value}", "属性 {code} 没有取值 {value}"),
    "date_invalid": ("{field} must be an ISO 8601 datetime with a timezone", "{field} 须为带时区的 ISO 8601 时间"),
    "date_order": ("start_date must not be after end_date", "start_date 不能晚于 end_date"),
    "date_span": ("start_date to end_date may span at most 90 days", "start_date 至 end_date 最多 90 天"),
    "status_invalid": ("status must be open or closed", "status 须为 open 或 closed"),
    "too_many_ids": ("At most {max} service_request_id values at once", "一次最多查询 {max} 个 service_request_id"),
    "parameter": ("Invalid parameter {field}", "参数 {field} 不正确"),
    "invalid": ("The request was not accepted: {detail}", "服务请求未被接受：{detail_zh}"),
    "internal": ("Internal error", "服务器内部错误"),
}


class Open311Error(DomainError):
    """A refusal in the spec's terms: ``status`` is the HTTP status and the error list's code."""

    def __init__(self, status: int, msg: str, /, **params: Any) -> None:
        super().__init__(msg, code=msg, params=params)
        self.status = status
        self.headers: dict[str, str] = {}


def message(code: str, locale: str, params: Mapping[str, Any]) -> str:
    """The error's description in ``locale`` (zh-CN or en); values quoted from input are
    cut short and scrubbed of personal data."""
    en, zh = MESSAGES.get(code, MESSAGES["invalid"])
    text = en if locale == "en" else zh
    safe = {k: scrub_text(str(v))[:80] for k, v in params.items()}
    try:
        return text.format(**safe)
    except (KeyError, IndexError):
        return text


def bad(msg: str, /, **params: Any) -> Open311Error:
    return Open311Error(400, msg, **params)


# --------------------------------------------------------------------------- service definitions


@dataclass(frozen=True)
class AttributeDef:
    """One attribute of a service definition 服务属性 (GeoReport v2 ``attribute``)."""

    code: str
    datatype: str
    description: str
    required: bool = False
    variable: bool = True
    order: int = 1
    datatype_description: str = ""
    values: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"attribute {self.code}: unknown datatype {self.datatype}")
        if (self.datatype in ("singlevaluelist", "multivaluelist")) != bool(self.values):
            raise ValueError(f"attribute {self.code}: values go with the list datatypes only")


@dataclass(frozen=True)
class ServiceDef:
    attributes: tuple[AttributeDef, ...] = ()
    keywords: str = ""
    notice: str = ""


def parse_definitions(data: Mapping[str, Any]) -> tuple[ServiceDef, dict[str, ServiceDef]]:
    """The default definition (every service) and the per-service ones from ``services.json``;
    a service's own attributes follow the default ones."""

    def attrs(rows: Iterable[Mapping[str, Any]]) -> tuple[AttributeDef, ...]:
        return tuple(AttributeDef(code=r["code"], datatype=r["datatype"], description=r["description"],
                                  required=bool(r.get("required", False)), variable=bool(r.get("variable", True)),
                                  order=int(r.get("order", 1)), datatype_description=r.get("datatype_description", ""),
                                  values=tuple((str(v["key"]), str(v["name"])) for v in r.get("values", [])))
                     for r in rows)

    default = ServiceDef(attributes=attrs(data.get("attributes", [])), notice=str(data.get("notice", "")))
    services = {}
    for code, row in data.get("services", {}).items():
        own = attrs(row.get("attributes", []))
        services[code] = ServiceDef(attributes=tuple(sorted(default.attributes + own, key=lambda a: a.order)),
                                    keywords=str(row.get("keywords", "")),
                                    notice=str(row.get("notice", default.notice)))
    return default, services


# --------------------------------------------------------------------------- POST requests input


@dataclass
class RequestIn:
    """A service request as a partner (or the citizens' page) submits it."""

    service_code: str
    jurisdiction_id: str | None = None
    lat: float | None = None
    long: float | None = None
    address_string: str | None = None
    address_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    description: str = ""
    media_url: str | None = None
    #: Attribute values as submitted: code -> (values, given in list form ``attribute[code][]``).
    attributes: dict[str, tuple[list[str], bool]] = field(default_factory=dict)


_SINGLE = ("service_code", "jurisdiction_id", "lat", "long", "address_string", "address_id", "email", "device_id",
           "account_id", "first_name", "last_name", "phone", "description", "media_url", "api_key")
_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def _text(values: Mapping[str, str], name: str, limit: int) -> str | None:
    raw = values.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if len(text) > limit:
        raise bad("too_long", field=name, max=limit)
    if _CONTROL.search(text):
        raise bad("control_chars", field=name)
    return text or None


def _coordinate(raw: str | None, low: float, high: float) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        raise bad("location_number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise bad("location_number")
    return value


def parse_form(pairs: Sequence[tuple[str, str]]) -> RequestIn:
    """Check a form-encoded POST requests body (pairs as received, repeats kept) and return it
    parsed. Everything a partner can get wrong is refused here, before anything is written."""
    single: dict[str, str] = {}
    attributes: dict[str, tuple[list[str], bool]] = {}
    for name, value in pairs:
        if name.startswith("attribute"):
            m = _ATTRIBUTE.match(name)
            if m is None:
                raise bad("attribute_malformed", name=name[:40])
            code, listed = m.group(1), bool(m.group(2))
            values, was_listed = attributes.get(code, ([], listed))
            if was_listed != listed:
                raise bad("attribute_malformed", name=name[:40])
            if len(values) >= 50:
                raise bad("attribute_malformed", name=name[:40])
            values.append(value)
            attributes[code] = (values, listed)
        elif name in _SINGLE:
            if name in single:
                raise bad("field_repeated", field=name)
            single[name] = value
    description = _text(single, "description", MAX_DESCRIPTION)
    data = RequestIn(service_code=(single.get("service_code") or "").strip())
    if not data.service_code:
        raise bad("service_required")
    data.jurisdiction_id = (single.get("jurisdiction_id") or "").strip() or None
    data.description = description or ""
    data.lat = _coordinate(single.get("lat"), -90, 90)
    data.long = _coordinate(single.get("long"), -180, 180)
    if (data.lat is None) != (data.long is None):
        raise bad("location_pair")
    data.address_string = _text(single, "address_string", MAX_ADDRESS)
    data.address_id = _text(single, "address_id", 64)
    if data.lat is None and not data.address_string:
        raise bad("location_required")
    data.first_name = _text(single, "first_name", MAX_NAME)
    data.last_name = _text(single, "last_name", MAX_NAME)
    data.phone = _text(single, "phone", 20)
    data.email = _text(single, "email", MAX_EMAIL)
    if data.email and not _EMAIL.match(data.email):
        raise bad("email_invalid")
    data.media_url = _text(single, "media_url", MAX_MEDIA_URL)
    if data.media_url and not _URL.match(data.media_url):
        raise bad("media_url_invalid")
    data.attributes = attributes
    return data


def check_attributes(service_code: str, definition: ServiceDef,
                     submitted: Mapping[str, tuple[list[str], bool]]) -> dict[str, Any]:
    """Validate attribute values against the service definition 服务属性校验; returns the
    values to keep (numbers as numbers, datetimes as ISO text, lists as lists)."""
    defs = {a.code: a for a in definition.attributes}
    for code in submitted:
        if code not in defs:
            raise bad("attribute_unknown", code=code, service=service_code)
        if not defs[code].variable:
            raise bad("attribute_fixed", code=code)
    out: dict[str, Any] = {}
    for a in definition.attributes:
        if not a.variable:
            continue
        values, listed = submitted.get(a.code, ([], False))
        values = [v.strip() for v in values if v.strip()]
        if not values:
            if a.required:
                raise bad("attribute_required", code=a.code)
            continue
        if a.datatype != "multivaluelist" and (listed or len(values) > 1):
            raise bad("attribute_single", code=a.code)
        keys = {k for k, _ in a.values}
        if a.datatype == "multivaluelist":
            for v in values:
                if v not in keys:
                    raise bad("attribute_value", code=a.code, value=v)
            out[a.code] = list(dict.fromkeys(values))
            continue
        v = values[0]
        if _CONTROL.search(v):
            raise bad("control_chars", field=f"attribute[{a.code}]")
        if a.datatype == "singlevaluelist":
            if v not in keys:
                raise bad("attribute_value", code=a.code, value=v)
            out[a.code] = v
        elif a.datatype == "number":
            try:
                number = float(v)
            except ValueError:
                raise bad("attribute_type", code=a.code, datatype="number") from None
            if not math.isfinite(number):
                raise bad("attribute_type", code=a.code, datatype="number")
            out[a.code] = int(number) if number.is_integer() and abs(number) < 2**53 else number
        elif a.datatype == "datetime":
            try:
                out[a.code] = parse_datetime(v, f"attribute[{a.code}]").isoformat()
            except Open311Error:
                raise bad("attribute_type", code=a.code, datatype="datetime") from None
        else:
            limit = MAX_STRING if a.datatype == "string" else MAX_TEXT
            if len(v) > limit:
                raise bad("too_long", field=f"attribute[{a.code}]", max=limit)
            out[a.code] = v
    return out


def reporter_name(first: str | None, last: str | None) -> str | None:
    """One name from Open311's two fields: family name first, unspaced, when both are Chinese
    (王 + 小明 = 王小明); ``first last`` otherwise."""
    parts = [p for p in (first, last) if p]
    if not parts:
        return None
    if first and last and _CJK.search(first) and _CJK.search(last):
        return (last + first)[:MAX_NAME]
    return " ".join(parts)[:MAX_NAME]


_CJK = re.compile(r"[\u3400-\u9fff]")


# --------------------------------------------------------------------------- GET queries


def parse_datetime(raw: str, name: str) -> datetime:
    """A W3C/ISO 8601 datetime that names its timezone (``Z`` or ``+08:00``); naive ones and
    bare dates are refused, so nothing is ever read in an assumed zone."""
    text = raw.strip()
    if "T" not in text.upper():
        raise bad("date_invalid", field=name)
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise bad("date_invalid", field=name) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise bad("date_invalid", field=name)
    return value


def date_window(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The searched span: as given, or the 90 days ending at ``end`` (or now), or starting at
    ``start``; never longer than 90 days nor inverted."""
    s = parse_datetime(start, "start_date") if start else None
    e = parse_datetime(end, "end_date") if end else None
    if s is None and e is None:
        e = now
    if s is None:
        assert e is not None
        s = e - MAX_SPAN
    if e is None:
        e = s + MAX_SPAN
    if s > e:
        raise bad("date_order")
    if e - s > MAX_SPAN:
        raise bad("date_span")
    return s, e


def split_list(values: Sequence[str]) -> list[str]:
    """Open311 lists: comma-delimited, and/or the parameter repeated."""
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return list(dict.fromkeys(out))


def parse_statuses(values: Sequence[str]) -> list[str]:
    statuses = [s.lower() for s in split_list(values)]
    if any(s not in PUBLIC_STATUSES for s in statuses):
        raise bad("status_invalid")
    return statuses
