"""Tests for shiyu.kit.pii: resident ID 居民身份证号 / mobile 手机号码 validation, masking, scrubbing."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shiyu.kit.pii import (
    PROVINCE_CODES,
    PiiError,
    PiiScrubbingFilter,
    ResidentId,
    find_unmasked,
    is_valid_resident_id,
    mask_address,
    mask_name,
    mask_phone,
    mask_resident_id,
    resident_id_check_digit,
    scrub_text,
    validate_mobile,
    validate_resident_id,
)

PROVINCES = [
    *(str(c) for c in range(11, 16)),
    *(str(c) for c in range(21, 24)),
    *(str(c) for c in range(31, 38)),
    *(str(c) for c in range(41, 47)),
    *(str(c) for c in range(50, 55)),
    *(str(c) for c in range(61, 66)),
    "71",
    "81",
    "82",
]
NON_PROVINCES = sorted({f"{c:02d}" for c in range(100)} - set(PROVINCES))

# Two days of slack so the test machine's local date can never be ahead of "today" in China.
SAFE_TODAY = date.today() - timedelta(days=2)
GB_EXAMPLE = "11010519491231002X"  # GB 11643-1999 example
ID_RE = re.compile(r"[0-9]{17}[0-9X]")


def build_id(province: str, area_tail: str, birth: date, sequence: str) -> str:
    first17 = f"{province}{area_tail}{birth:%Y%m%d}{sequence}"
    return first17 + resident_id_check_digit(first17)


def mod11_2_ok(resident_id: str) -> bool:
    """Independent ISO 7064 MOD 11-2 check: sum(a_i * 2^(18-i)) ≡ 1 (mod 11), X = 10."""
    values = [10 if ch == "X" else int(ch) for ch in resident_id]
    return sum(v * pow(2, 17 - i) for i, v in enumerate(values)) % 11 == 1


provinces = st.sampled_from(PROVINCES)
area_tails = st.from_regex(r"[0-9]{4}", fullmatch=True)
sequences = st.from_regex(r"[0-9]{3}", fullmatch=True)
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=SAFE_TODAY)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    return build_id(draw(provinces), draw(area_tails), draw(birth_dates), draw(sequences))


mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


def code_of(value: object, **kwargs: object) -> str:
    with pytest.raises(PiiError) as info:
        validate_resident_id(value, **kwargs)  # type: ignore[arg-type]
    return info.value.code


# --------------------------------------------------------------------------- check digit 校验码


def test_gb_standard_examples() -> None:
    assert resident_id_check_digit("11010519491231002") == "X"
    assert resident_id_check_digit("44052418800101001") == "4"  # 440524188001010014, also from GB 11643
    rid = validate_resident_id(GB_EXAMPLE)
    assert rid == ResidentId(value=GB_EXAMPLE, area_code="110105", birth_date=date(1949, 12, 31), sex="F")


def test_fixed_valid_ids() -> None:
    assert is_valid_resident_id("110101199003070011")
    male = validate_resident_id("110101199003070011")
    assert (male.sex, male.birth_date, male.area_code) == ("M", date(1990, 3, 7), "110101")
    assert mod11_2_ok("440304198510101224")
    assert validate_resident_id("440304198510101224").sex == "F"
    assert not is_valid_resident_id("110101199003070012")


@pytest.mark.parametrize("bad", ["", "1101051949123100", "110105194912310021X", "abc"])
def test_check_digit_rejects_bad_input(bad: str) -> None:
    with pytest.raises(PiiError) as info:
        resident_id_check_digit(bad)
    assert info.value.code in {"length", "format"}


@given(resident_ids())
def test_check_digit_satisfies_mod11_2(resident_id: str) -> None:
    assert resident_id[17] in "0123456789X"
    assert mod11_2_ok(resident_id)


@given(resident_ids(), st.integers(0, 16), st.integers(1, 9))
def test_single_digit_change_breaks_check_digit(resident_id: str, position: int, delta: int) -> None:
    mutated = list(resident_id)
    mutated[position] = str((int(mutated[position]) + delta) % 10)
    mutated17 = "".join(mutated[:17])
    assert resident_id_check_digit(mutated17) != resident_id[17]
    assert not mod11_2_ok(mutated17 + resident_id[17])


@given(resident_ids(), st.sampled_from([2, 3, 4, 5, 14, 15, 16]), st.integers(1, 9))
def test_single_digit_change_is_reported_as_check_digit(resident_id: str, position: int, delta: int) -> None:
    # Positions outside the province code and birth date: only the check digit can fail.
    mutated = list(resident_id)
    mutated[position] = str((int(mutated[position]) + delta) % 10)
    assert code_of("".join(mutated)) == "check_digit"


@given(resident_ids(), st.sampled_from("0123456789X"))
def test_wrong_check_digit(resident_id: str, wrong: str) -> None:
    assume(wrong != resident_id[17])
    assert code_of(resident_id[:17] + wrong) == "check_digit"
    assert not is_valid_resident_id(resident_id[:17] + wrong)


# --------------------------------------------------------------------------- validation 校验


@given(resident_ids())
def test_valid_ids_round_trip(resident_id: str) -> None:
    parsed = validate_resident_id(resident_id)
    assert parsed.value == resident_id
    assert parsed.area_code == resident_id[:6]
    assert parsed.birth_date == date(int(resident_id[6:10]), int(resident_id[10:12]), int(resident_id[12:14]))
    assert parsed.sex == ("M" if int(resident_id[16]) % 2 else "F")
    assert validate_resident_id(parsed.value) == parsed
    assert is_valid_resident_id(resident_id)


@given(resident_ids(), st.sampled_from(["", " ", "\t", "\n ", "\u3000"]), st.sampled_from(["", " ", "\r\n"]))
def test_whitespace_and_lowercase_x_are_normalised(resident_id: str, before: str, after: str) -> None:
    parsed = validate_resident_id(before + resident_id.lower() + after)
    assert parsed.value == resident_id


def test_lowercase_x_example() -> None:
    assert validate_resident_id("  11010519491231002x ").value == GB_EXAMPLE


@pytest.mark.parametrize(
    "birth",
    [
        "19990230",
        "20230229",
        "19000229",
        "19991301",
        "19990001",
        "19990100",
        "19990431",
        "18991231",
        "00000000",
    ],
)
def test_bad_birth_dates(birth: str) -> None:
    first17 = f"110105{birth}002"
    assert code_of(first17 + resident_id_check_digit(first17)) == "birth_date"


@pytest.mark.parametrize("birth", ["19000101", "20000229", "20240229"])
def test_boundary_and_leap_dates_accepted(birth: str) -> None:
    first17 = f"110105{birth}002"
    assert (
        validate_resident_id(first17 + resident_id_check_digit(first17)).birth_date.strftime("%Y%m%d")
        == birth
    )


@given(st.dates(min_value=date(1900, 1, 2), max_value=date(2100, 1, 1)), provinces, sequences)
def test_future_birth_dates_rejected(today: date, province: str, sequence: str) -> None:
    assert validate_resident_id(build_id(province, "0105", today, sequence), today=today).birth_date == today
    tomorrow = build_id(province, "0105", today + timedelta(days=1), sequence)
    assert code_of(tomorrow, today=today) == "birth_date"


def test_far_future_rejected_with_default_today() -> None:
    assert code_of(build_id("11", "0105", date(2999, 1, 1), "002")) == "birth_date"
    assert code_of(build_id("11", "0105", date.today() + timedelta(days=3), "002")) == "birth_date"


@given(st.sampled_from(NON_PROVINCES), area_tails, birth_dates, sequences)
def test_bad_province_is_area_error(province: str, tail: str, birth: date, sequence: str) -> None:
    assert code_of(build_id(province, tail, birth, sequence)) == "area"


def test_province_codes_constant() -> None:
    assert frozenset(PROVINCES) == PROVINCE_CODES
    assert {"16", "83", "91", "00"}.isdisjoint(PROVINCE_CODES)
    # County part is not checked: 110000 (whole province) is accepted.
    assert is_valid_resident_id(build_id("11", "0000", date(1980, 1, 1), "001"))


@pytest.mark.parametrize("value", ["", "1101051949123100", "11010519491231002X1", "110105194912310021 2"])
def test_length_errors(value: str) -> None:
    assert code_of(value) == "length"


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002Y",
        "1101051949123100XX",
        "X10105194912310021",
        "11010519491231002-",
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits are not accepted by the validator
        "1101051949123100２X",
    ],
)
def test_format_errors(value: str) -> None:
    assert code_of(value) == "format"


def test_non_string_is_format_error() -> None:
    assert code_of(110105194912310021) == "format"
    assert not is_valid_resident_id(None)  # type: ignore[arg-type]


def test_error_shape_and_no_echo() -> None:
    with pytest.raises(PiiError) as info:
        validate_resident_id("110105194912310021")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.code == "check_digit"
    assert err.message_zh == "居民身份证号校验码不正确"
    assert "check digit" in err.message_en
    assert str(err) == err.message_en
    assert "110105194912310021" not in f"{err} {err.message_zh} {err!r}"


@pytest.mark.parametrize("code", ["length", "format", "area", "birth_date", "check_digit", "phone_format"])
def test_every_code_has_both_messages(code: str) -> None:
    err = PiiError(code)  # type: ignore[arg-type]
    assert err.code == code
    assert re.search(r"[\u4e00-\u9fff]", err.message_zh)
    assert err.message_en.isascii() and err.message_en


def test_resident_id_is_frozen_and_repr_is_masked() -> None:
    rid = validate_resident_id(GB_EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rid.value = "x"  # type: ignore[misc]
    assert GB_EXAMPLE not in repr(rid)
    assert GB_EXAMPLE not in f"{rid}"
    assert "110***********002X" in repr(rid)


# --------------------------------------------------------------------------- mobile 手机号码


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("19912345678", "19912345678"),
        (" 138 1234 5678 ", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+8613812345678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("+86-138-1234-5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("86 13812345678", "13812345678"),
        ("0086 13812345678", "13812345678"),
    ],
)
def test_validate_mobile_normalises(raw: str, expected: str) -> None:
    assert validate_mobile(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12812345678",
        "10012345678",
        "1381234567",
        "138123456789",
        "+861381234567",
        "+87 13812345678",
        "86138123456",
        "+86+8613812345678",
        "138.1234.5678",
        "１３８１２３４５６７８",
        "1381234567a",
        "013812345678",
    ],
)
def test_validate_mobile_rejects(raw: str) -> None:
    with pytest.raises(PiiError) as info:
        validate_mobile(raw)
    assert info.value.code == "phone_format"
    assert info.value.message_zh == "手机号码格式不正确"


@given(mobiles, st.sampled_from(["", "+86", "+86 ", "86", "0086-"]))
def test_validate_mobile_property(mobile: str, prefix: str) -> None:
    assert validate_mobile(prefix + mobile) == mobile
    assert validate_mobile(f"{mobile[:3]} {mobile[3:7]}-{mobile[7:]}") == mobile


# --------------------------------------------------------------------------- masking 脱敏


def test_mask_examples() -> None:
    assert mask_resident_id(GB_EXAMPLE) == "110***********002X"
    assert mask_resident_id("110105194912310123X"[1:]) == "101***********123X"
    assert mask_resident_id("1234567") == "*******"
    assert mask_resident_id("12345678") == "123*5678"
    assert mask_resident_id("") == ""
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+8613812345678") == "+86*******5678"
    assert mask_phone("1234567") == "*******"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("") == ""
    assert mask_name(" 李四 ") == "李*"
    assert mask_address("北京市朝阳区建国路88号") == "北京市朝阳区****"
    assert mask_address("北京市朝阳区") == "北京市朝阳区"
    assert mask_address("") == ""


@given(st.text(alphabet="0123456789X", min_size=8, max_size=40))
@example("11010519491231002X")
def test_mask_middle_properties(value: str) -> None:
    for masked in (mask_resident_id(value), mask_phone(value)):
        assert len(masked) == len(value)
        assert masked[:3] == value[:3]
        assert masked[-4:] == value[-4:]
        assert set(masked[3:-4]) <= {"*"}
        assert value not in masked


@given(st.text(max_size=7))
def test_short_values_fully_masked(value: str) -> None:
    assert mask_resident_id(value) == "*" * len(value)
    assert mask_phone(value) == "*" * len(value)


@given(resident_ids())
def test_masked_id_leaks_at_most_four_digits_in_a_row(resident_id: str) -> None:
    masked = mask_resident_id(resident_id)
    assert max(len(run) for run in re.findall(r"[0-9X]+", masked)) <= 4
    assert not is_valid_resident_id(masked)
    assert find_unmasked(masked) == []


@given(mobiles)
def test_mask_phone_property(mobile: str) -> None:
    masked = mask_phone(mobile)
    assert masked == mobile[:3] + "****" + mobile[-4:]
    assert find_unmasked(masked) == []


@given(st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc")), min_size=1, max_size=20))
def test_mask_name_property(name: str) -> None:
    assume(name.strip() == name)
    masked = mask_name(name)
    assert len(masked) == len(name)
    assert masked[0] == name[0]
    assert set(masked[1:]) <= {"*"}


@given(st.text(min_size=7, max_size=60))
def test_mask_address_property(address: str) -> None:
    assume(len(address.strip()) > 6)
    masked = mask_address(address)
    assert masked == address.strip()[:6] + "****"


# --------------------------------------------------------------------------- scrubbing 文本清洗


def test_scrub_examples() -> None:
    text = f"居民 张三，身份证 {GB_EXAMPLE}，手机13812345678；备用 +86 139-1234-5678。"
    scrubbed = scrub_text(text)
    assert scrubbed == "居民 张三，身份证 110***********002X，手机138****5678；备用 +86 139-****-5678。"
    assert find_unmasked(text) == [GB_EXAMPLE, "13812345678", "13912345678"]
    assert find_unmasked(scrubbed) == []


def test_scrub_is_conservative_about_check_digits_and_case() -> None:
    bad_check = "110105194912310021"
    assert scrub_text(f"id={bad_check}") == "id=110***********0021"
    assert find_unmasked(f"id={bad_check}") == []  # not a valid ID, but still masked above
    assert scrub_text("id:11010519491231002x.") == "id:110***********002x."
    assert find_unmasked("id:11010519491231002x.") == [GB_EXAMPLE]
    # An ID ending in X is still masked when more digits follow the X.
    assert scrub_text(f"{GB_EXAMPLE}123") == "110***********002X123"


def test_scrub_ignores_longer_digit_runs() -> None:
    for text in [
        "1381234567890",
        "2138123456789",
        "1101051949123100211",
        "6222021234567890123",
        "x12812345678",
    ]:
        assert scrub_text(text) == text
        assert find_unmasked(text) == []


def test_scrub_leaves_decimal_fractions_alone() -> None:
    # Coordinates and distances print with up to 17 significant digits; their fractions
    # are not phone numbers or IDs. A number after a full stop that ends a sentence is.
    for text in ["lat=0.13812345678", "lon 116.13812345678", "d=2.110105194912310021"]:
        assert scrub_text(text) == text
        assert find_unmasked(text) == []
    assert scrub_text("Tel.13812345678") == "Tel.138****5678"
    assert scrub_text("电话：13812345678.") == "电话：138****5678."


def test_scrub_handles_country_codes_and_full_width_digits() -> None:
    assert scrub_text("tel:8613812345678") == "tel:86138****5678"
    assert scrub_text("tel:008613812345678") == "tel:0086138****5678"
    full_width_phone = "１３８１２３４５６７８"
    assert scrub_text(f"电话{full_width_phone}") == "电话１３８****５６７８"
    assert find_unmasked(full_width_phone) == ["13812345678"]
    full_width_id = "１１０１０５１９４９１２３１００２Ｘ"
    assert scrub_text(full_width_id) == "１１０***********００２Ｘ"
    assert find_unmasked(full_width_id) == [GB_EXAMPLE]


separators = st.sampled_from([" ", "，", "：", "\n", "。", "a", "id=", "tel:", "(", ")"])
fillers = st.text(
    alphabet=st.characters(blacklist_categories=("Nd",), blacklist_characters="xXｘＸ+-\u3000"), max_size=12
)


@st.composite
def texts_with_pii(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """Free text with embedded IDs and mobiles; returns (text, embedded raw values, expected finds)."""
    parts: list[str] = [draw(fillers)]
    embedded: list[str] = []
    expected: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["id", "id_lower", "bad_check", "mobile"]))
        if kind == "mobile":
            value = draw(mobiles)
            expected.append(value)
        else:
            value = draw(resident_ids())
            if kind == "bad_check":
                value = value[:17] + draw(st.sampled_from([c for c in "0123456789X" if c != value[17]]))
            else:
                expected.append(value)
                if kind == "id_lower":
                    value = value.lower()
        embedded.append(value)
        parts += [draw(separators), value, draw(separators), draw(fillers)]
    return "".join(parts), embedded, expected


@given(texts_with_pii())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_scrub_masks_everything_embedded(case: tuple[str, list[str], list[str]]) -> None:
    text, embedded, expected = case
    assert find_unmasked(text) == expected
    scrubbed = scrub_text(text)
    assert len(scrubbed) == len(text)
    assert find_unmasked(scrubbed) == []
    for value in embedded:
        assert value not in scrubbed
        assert value.upper() not in scrubbed.upper()
        assert (mask_phone(value) if len(value) == 11 else mask_resident_id(value)) in scrubbed
    assert scrub_text(scrubbed) == scrubbed


digit_heavy = st.text(alphabet=st.sampled_from([*"0123456789" * 4, *"Xx +-，１３８٣\u3000a"]), max_size=120)


@given(digit_heavy)
@example("+86 138 1234 5678 1391234567813912345678")
@example("11010519491231002X13812345678")
def test_scrub_leaves_nothing_findable(text: str) -> None:
    scrubbed = scrub_text(text)
    assert find_unmasked(scrubbed) == []
    assert scrub_text(scrubbed) == scrubbed
    assert len(scrubbed) == len(text)
    # Scrubbing only ever replaces characters with '*'.
    assert all(a == b or b == "*" for a, b in zip(text, scrubbed, strict=True))


@given(st.text(max_size=200))
def test_scrub_arbitrary_text(text: str) -> None:
    assert find_unmasked(scrub_text(text)) == []


@given(st.lists(resident_ids() | mobiles, max_size=5))
def test_find_unmasked_reports_each_occurrence_in_order(values: list[str]) -> None:
    assert find_unmasked(" ".join(values)) == values


# --------------------------------------------------------------------------- logging filter 日志脱敏


@pytest.fixture
def pii_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("shiyu.tests.pii")
    scrubber = PiiScrubbingFilter()
    logger.addFilter(scrubber)
    yield logger
    logger.removeFilter(scrubber)


def test_filter_scrubs_formatted_message(
    pii_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="shiyu.tests.pii"):
        pii_logger.info("resident %s phone %s age %d", GB_EXAMPLE, "13812345678", 75)
        pii_logger.warning("%(id)s / %(tel)s", {"id": GB_EXAMPLE.lower(), "tel": "+86 139 1234 5678"})
        pii_logger.error("no args %s 13712345678")
        pii_logger.info("mismatched %s %s", "13612345678")
    assert GB_EXAMPLE not in caplog.text
    assert find_unmasked(caplog.text) == []
    first, second, third, fourth = caplog.records
    assert first.getMessage() == "resident 110***********002X phone 138****5678 age 75"
    # Tuple args keep their shape (uvicorn's access formatter unpacks them).
    assert isinstance(first.args, tuple) and len(first.args) == 3
    assert second.getMessage() == "110***********002x / +86 139 **** 5678"
    assert third.getMessage() == "no args %s 137****5678"
    assert "136****5678" in fourth.getMessage()
    assert "13612345678" not in fourth.getMessage()


def test_filter_scrubs_exception_text(pii_logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="shiyu.tests.pii"):
        try:
            raise RuntimeError(f"lookup failed for {GB_EXAMPLE}")
        except RuntimeError:
            pii_logger.exception("failed for %s", "13812345678")
    assert "RuntimeError: lookup failed for 110***********002X" in caplog.text
    assert "138****5678" in caplog.text
    assert find_unmasked(caplog.text) == []


def test_filter_always_returns_true_and_is_idempotent() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "id %s", (GB_EXAMPLE,), None)
    scrubber = PiiScrubbingFilter()
    assert scrubber.filter(record) is True
    assert scrubber.filter(record) is True
    assert record.getMessage() == "id 110***********002X"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "nothing here", None, None)
    assert scrubber.filter(plain) is True
    assert plain.getMessage() == "nothing here"


@given(st.binary(min_size=1, max_size=64))
def test_csrf_token_never_looks_like_personal_data(raw: bytes) -> None:
    """The CSRF value sits in every page; the page scanners must never take it for a mobile or ID."""
    from shiyu.platform.web.deps import csrf_token

    value = csrf_token(raw.hex())
    assert len(value) == 32
    assert not any(ch in value for ch in "0189")
    assert find_unmasked(value) == []
