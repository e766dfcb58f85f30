"""Personal-data helpers 个人信息工具: validate, mask and scrub PII 个人信息.

Covers the two identifiers the platform handles most: the resident ID 居民身份证号
(GB 11643-1999, 18 characters) and the mainland China mobile number 手机号码. Masking
脱敏 keeps just enough of a value for a human to recognise it; scrubbing 清洗 finds
and masks identifiers inside free text (log lines, remarks, API payloads).

Stdlib only. Error messages never echo the offending value, so a ``PiiError`` can be
logged or returned to a client without leaking the input.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final, Literal

__all__ = [
    "PROVINCE_CODES",
    "PiiError",
    "PiiErrorCode",
    "PiiScrubbingFilter",
    "ResidentId",
    "find_unmasked",
    "is_valid_resident_id",
    "mask_address",
    "mask_name",
    "mask_phone",
    "mask_resident_id",
    "resident_id_check_digit",
    "scrub_text",
    "validate_mobile",
    "validate_resident_id",
]

PiiErrorCode = Literal["length", "format", "area", "birth_date", "check_digit", "phone_format"]

_MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "length": ("居民身份证号应为18位", "resident ID must be 18 characters long"),
    "format": (
        "居民身份证号格式不正确：前17位须为数字，末位须为数字或X",
        "resident ID format is invalid: the first 17 characters must be digits and the last a digit or X",
    ),
    "area": ("居民身份证号的行政区划代码无效", "resident ID has an invalid area (province) code"),
    "birth_date": ("居民身份证号中的出生日期无效", "resident ID contains an invalid birth date"),
    "check_digit": ("居民身份证号校验码不正确", "resident ID check digit does not match"),
    "phone_format": ("手机号码格式不正确", "invalid mainland China mobile number"),
}


class PiiError(ValueError):
    """Invalid personal data 个人信息校验失败.

    ``code`` is stable and machine-readable (``length``, ``format``, ``area``,
    ``birth_date``, ``check_digit`` for resident IDs; ``phone_format`` for phones);
    ``message_zh`` / ``message_en`` are human messages in Simplified Chinese and English.
    Messages never contain the rejected value.
    """

    code: str
    message_zh: str
    message_en: str

    def __init__(self, code: PiiErrorCode, message_zh: str | None = None, message_en: str | None = None):
        default_zh, default_en = _MESSAGES[code]
        self.code = code
        self.message_zh = message_zh if message_zh is not None else default_zh
        self.message_en = message_en if message_en is not None else default_en
        super().__init__(self.message_en)


# --------------------------------------------------------------------------- resident ID 居民身份证号

#: Province-level codes 省级行政区划代码 (GB/T 2260, first two digits of the area code),
#: plus Taiwan 台湾 71, Hong Kong 香港 81 and Macau 澳门 82.
PROVINCE_CODES: Final[frozenset[str]] = frozenset(
    f"{code:02d}"
    for code in (
        *range(11, 16),
        *range(21, 24),
        *range(31, 38),
        *range(41, 47),
        *range(50, 55),
        *range(61, 66),
        71,
        81,
        82,
    )
)

#: ISO 7064 MOD 11-2 weights 加权因子 W_i = 2^(17-i) mod 11 for positions 1..17.
_WEIGHTS: Final[tuple[int, ...]] = tuple(pow(2, 17 - i, 11) for i in range(17))
#: Check character 校验码 indexed by (weighted sum mod 11).
_CHECK_CHARS: Final[str] = "10X98765432"
_MIN_BIRTH_DATE: Final[date] = date(1900, 1, 1)
#: China Standard Time 北京时间 (no daylight saving), used for "today".
_CHINA_TZ: Final[timezone] = timezone(timedelta(hours=8), "CST")

_DIGITS17_RE: Final[re.Pattern[str]] = re.compile(r"[0-9]{17}")
_RESIDENT_ID_RE: Final[re.Pattern[str]] = re.compile(r"[0-9]{17}[0-9X]")


def _china_today() -> date:
    return datetime.now(_CHINA_TZ).date()


def resident_id_check_digit(first17: str) -> str:
    """Check character 校验码 of a resident ID 居民身份证号 from its first 17 digits.

    GB 11643-1999, ISO 7064 MOD 11-2. Returns ``'0'``-``'9'`` or ``'X'``.
    Raises ``PiiError`` (``length`` / ``format``) unless given exactly 17 ASCII digits.
    """
    if len(first17) != 17:
        raise PiiError(
            "length", "居民身份证号本体码应为17位数字", "resident ID body must be exactly 17 digits"
        )
    if not _DIGITS17_RE.fullmatch(first17):
        raise PiiError(
            "format", "居民身份证号本体码须全部为数字", "resident ID body must contain only digits"
        )
    total = sum(int(ch) * weight for ch, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


@dataclass(frozen=True, slots=True)
class ResidentId:
    """A validated resident ID 居民身份证号.

    ``value`` is normalised (no surrounding whitespace, upper-case ``X``); ``area_code``
    is the 6-digit administrative area code 行政区划代码; ``sex`` 性别 comes from the
    17th digit (odd = ``"M"`` 男, even = ``"F"`` 女). ``repr``/``str`` mask the number so
    the object is safe to log; use ``.value`` for the full number.
    """

    value: str
    area_code: str
    birth_date: date
    sex: Literal["M", "F"]

    def __repr__(self) -> str:
        return f"ResidentId({mask_resident_id(self.value)!r})"


def validate_resident_id(value: str, *, today: date | None = None) -> ResidentId:
    """Validate a resident ID 居民身份证号 and return its parsed form.

    Accepts surrounding whitespace and a lower-case ``x``. Checks, in order: length 长度
    (18), format 格式 (17 ASCII digits + digit/X), province code 省级代码 (``area``),
    birth date 出生日期 (a real date between 1900-01-01 and ``today``, which defaults
    to the current date in China Standard Time), check digit 校验码.
    Raises ``PiiError`` with the matching ``code``.
    """
    if not isinstance(value, str):
        raise PiiError("format")
    normalised = value.strip()
    if len(normalised) != 18:
        raise PiiError("length")
    if normalised[-1] == "x":
        # Only the check character may be upper-cased: str.upper() could change the length.
        normalised = normalised[:-1] + "X"
    if not _RESIDENT_ID_RE.fullmatch(normalised):
        raise PiiError("format")
    if normalised[:2] not in PROVINCE_CODES:
        raise PiiError("area")
    try:
        birth = date(int(normalised[6:10]), int(normalised[10:12]), int(normalised[12:14]))
    except ValueError:
        raise PiiError("birth_date") from None
    upper_bound = today if today is not None else _china_today()
    if not _MIN_BIRTH_DATE <= birth <= upper_bound:
        raise PiiError("birth_date")
    if resident_id_check_digit(normalised[:17]) != normalised[17]:
        raise PiiError("check_digit")
    sex: Literal["M", "F"] = "M" if int(normalised[16]) % 2 == 1 else "F"
    return ResidentId(value=normalised, area_code=normalised[:6], birth_date=birth, sex=sex)


def is_valid_resident_id(value: str) -> bool:
    """True if ``value`` passes ``validate_resident_id`` 居民身份证号是否有效."""
    try:
        validate_resident_id(value)
    except PiiError:
        return False
    return True


# --------------------------------------------------------------------------- mobile 手机号码

_MOBILE_RE: Final[re.Pattern[str]] = re.compile(r"1[3-9][0-9]{9}")
_PHONE_NOISE_RE: Final[re.Pattern[str]] = re.compile(r"[\s-]+")
_COUNTRY_PREFIXES: Final[tuple[str, ...]] = ("+86", "0086", "86")


def validate_mobile(value: str) -> str:
    """Validate a mainland China mobile number 手机号码 and return its 11 digits.

    Normalisation: whitespace and dashes are removed, then a leading country code
    国家代码 ``+86`` / ``0086`` / ``86`` is dropped when exactly 11 digits follow it.
    The result must match ``^1[3-9]\\d{9}$`` (ASCII digits); otherwise raises
    ``PiiError(code="phone_format")``.
    """
    if not isinstance(value, str):
        raise PiiError("phone_format")
    compact = _PHONE_NOISE_RE.sub("", value)
    for prefix in _COUNTRY_PREFIXES:
        rest = compact[len(prefix) :]
        if compact.startswith(prefix) and len(rest) == 11 and rest.isascii() and rest.isdigit():
            compact = rest
            break
    if not _MOBILE_RE.fullmatch(compact):
        raise PiiError("phone_format")
    return compact


# --------------------------------------------------------------------------- masking 脱敏


def _mask_middle(value: str) -> str:
    """Keep the first 3 and last 4 characters (length >= 8), mask the rest with '*'."""
    if len(value) < 8:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_resident_id(value: str) -> str:
    """Mask a resident ID 居民身份证号脱敏: ``110***********123X``.

    Keeps the first 3 and last 4 characters and replaces everything in between with
    ``*`` (length preserved). Strings shorter than 8 become all ``*``.
    """
    return _mask_middle(value)


def mask_phone(value: str) -> str:
    """Mask a phone number 手机号码脱敏: ``13812345678`` -> ``138****5678``.

    Keeps the first 3 and last 4 characters (length preserved) when the value has at
    least 8 characters, otherwise returns all ``*``.
    """
    return _mask_middle(value)


def mask_name(value: str) -> str:
    """Mask a personal name 姓名脱敏: keep the first character, ``张三`` -> ``张*``.

    Surrounding whitespace is ignored; an empty name stays empty.
    """
    name = value.strip()
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1)


def mask_address(value: str) -> str:
    """Mask an address 地址脱敏: keep the first 6 characters and append ``****``.

    Surrounding whitespace is ignored; addresses of at most 6 characters are returned
    unchanged (they carry no street-level detail).
    """
    address = value.strip()
    if len(address) <= 6:
        return address
    return address[:6] + "****"


# --------------------------------------------------------------------------- scrubbing 文本清洗


class _Fold(dict[int, int]):
    """``str.translate`` table that folds look-alike characters onto ASCII, one-to-one.

    Any Unicode decimal digit (full-width ``１``, Arabic-Indic, ...) becomes its ASCII
    digit, ``x``/``ｘ``/``Ｘ`` become ``X``, and full-width ``＋``, ``－`` and the ideographic
    space become ``+``, ``-`` and space. Every character maps to exactly one character,
    so match positions in the folded text are positions in the original text.
    """

    _EXTRA: Final[dict[str, str]] = {"x": "X", "ｘ": "X", "Ｘ": "X", "＋": "+", "－": "-", "\u3000": " "}

    def __missing__(self, codepoint: int) -> int:
        char = chr(codepoint)
        if char in self._EXTRA:
            folded = ord(self._EXTRA[char])
        else:
            digit = unicodedata.decimal(char, None)
            folded = codepoint if digit is None else ord("0") + digit
        self[codepoint] = folded
        return folded


_FOLD: Final[_Fold] = _Fold()

# 17 digits + digit/X, not inside a longer digit run and not the fraction of a decimal
# number (``39.138123456789...``: coordinates and distances in logs and audit details).
# An X ends the candidate on its own.
_SCAN_ID_RE: Final[re.Pattern[str]] = re.compile(r"(?<![0-9])(?<![0-9]\.)[0-9]{17}(?:[0-9](?![0-9])|X)")
# 11 digits starting 1[3-9], optionally with a country code and 3-4-4 space/dash grouping,
# not the fraction of a decimal number either.
_SCAN_MOBILE_RE: Final[re.Pattern[str]] = re.compile(
    r"(?<![0-9])(?<![0-9]\.)(?:(?:\+|00)?86[ -]?)?(?P<national>1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4})(?![0-9])"
)


def _scan(text: str) -> tuple[str, list[str]]:
    """Return ``(scrubbed_text, found)``.

    ``found`` lists, in order of appearance, the normalised resident IDs with a valid
    check digit and the 11-digit mobiles that were present unmasked.
    """
    folded = text.translate(_FOLD)
    chars: list[str] | None = None
    folded_chars: list[str] | None = None
    found: list[tuple[int, str]] = []

    for match in _SCAN_ID_RE.finditer(folded):
        candidate = match.group()
        if resident_id_check_digit(candidate[:17]) == candidate[17]:
            found.append((match.start(), candidate))
        if chars is None or folded_chars is None:
            chars, folded_chars = list(text), list(folded)
        for pos in range(match.start() + 3, match.end() - 4):
            chars[pos] = folded_chars[pos] = "*"

    if folded_chars is not None:
        folded = "".join(folded_chars)
    for match in _SCAN_MOBILE_RE.finditer(folded):
        start = match.start("national")
        digit_positions = [start + i for i, ch in enumerate(match.group("national")) if ch.isdigit()]
        found.append((match.start(), "".join(folded[pos] for pos in digit_positions)))
        if chars is None:
            chars = list(text)
        for pos in digit_positions[3:7]:
            chars[pos] = "*"

    scrubbed = text if chars is None else "".join(chars)
    return scrubbed, [value for _, value in sorted(found)]


def scrub_text(text: str) -> str:
    """Mask every resident ID 居民身份证号 and mobile number 手机号码 in free text.

    Conservative: anything that looks like an ID (17 digits + digit/X, not part of a
    longer digit run) is masked whether or not its check digit is valid, as is any
    11-digit run starting ``1[3-9]`` (also with a ``+86``/``0086``/``86`` prefix or
    3-4-4 space/dash grouping). Full-width and other Unicode digits are recognised too.
    IDs become ``110***********123X``; mobiles ``138****5678`` (prefix and separators
    kept). Idempotent.
    """
    return _scan(text)[0]


def find_unmasked(text: str) -> list[str]:
    """Resident IDs (valid check digit) and mobiles found unmasked 未脱敏 in ``text``.

    Values are returned normalised (ASCII digits, upper-case ``X``, mobiles as 11
    digits), in order of appearance, one entry per occurrence. Uses the same matching
    as ``scrub_text``, so ``find_unmasked(scrub_text(t)) == []`` for any ``t``.
    """
    return _scan(text)[1]


class PiiScrubbingFilter(logging.Filter):
    """Logging filter 日志脱敏过滤器 that applies ``scrub_text`` to each record.

    The message is formatted with its args, scrubbed, and stored back in
    ``record.msg`` with ``record.args = None``. A pre-rendered traceback
    (``record.exc_text``, rendered here if absent) and ``record.stack_info`` are
    scrubbed as well. Never drops a record. Attach it to *handlers*: a filter on a
    logger does not see records propagated from its child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args :
            # Formatters such as uvicorn's access log unpack ``args``: keep the tuple's
            # shape and scrub each piece, then check the rendered whole as well.
            record.args = tuple(scrub_text(a) if isinstance(a, str) else a for a in record.args)
            if isinstance(record.msg, str):
                record.msg = scrub_text(record.msg)
            try:
                rendered = record.getMessage()
            except Exception:  # mismatched args: keep everything visible, but scrubbed
                rendered = f"{record.msg!s} (args: {record.args!r})"
                record.msg, record.args = scrub_text(rendered), None
            else:
                if scrub_text(rendered) != rendered:
                    record.msg, record.args = scrub_text(rendered), None
        else:
            try:
                message = record.getMessage()
            except Exception:  # mismatched args: keep everything visible, but scrubbed
                message = f"{record.msg!s} (args: {record.args!r})"
            record.msg = scrub_text(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_text(record.stack_info)
        return True


def install_log_scrubbing() -> None:
    """Scrub every log record 日志脱敏 as it is created, whatever logger made it and whatever
    handler gets it: a filter on a parent logger (e.g. ``sqlalchemy``) never sees the
    records of its children (``sqlalchemy.engine.Engine`` logs result rows at DEBUG),
    and handlers attached later (test capture, a new root handler) have no filter."""
    old_factory = logging.getLogRecordFactory()
    if getattr(old_factory, "_shiyu_scrubbing", False):
        return
    flt = PiiScrubbingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old_factory(*args, **kwargs)
        flt.filter(record)
        return record

    factory._shiyu_scrubbing = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
