"""Rendering of the analysis report "一分析三报告" to HTML and PDF (WeasyPrint, CJK font embedded)."""

from __future__ import annotations

import base64
import io
import re

import pytest
from pypdf import PdfReader
from shapely.geometry import MultiPolygon, Polygon, box

from shiyu.domains.reports import charts, fonts
from shiyu.domains.reports.render import (
    AUDIENCES,
    LABELS_ZH,
    SECTIONS,
    fmt_change,
    fmt_rate,
    render_html,
    render_html_many,
    render_pdf,
    render_pdf_many,
    section_order,
)
from shiyu.kit.errors import Invalid

TOFU = ("\u25a1", "\ufffd", "\u25af")


def _row(cur: int | None, prev: int | None, ly: int | None) -> dict:
    return {"current": cur, "previous": prev, "last_year": ly,
            "mom": None if not prev or cur is None else (cur - prev) / prev,
            "yoy": None if not ly or cur is None else (cur - ly) / ly}


def _rate(value: float | None, num: int | None, den: int, prev: float | None, ly: float | None) -> dict:
    return {"value": value, "numerator": num, "denominator": den, "previous": prev, "last_year": ly}


GRIDS = [f"3201020010010{i:02d}" for i in range(12)]


def sample_report() -> dict:
    """A hand-built report following the ``shiyu.report.analysis/1`` contract."""
    period = {"label": "2026-10", "start": "2026-10-01T00:00:00+08:00", "end": "2026-11-01T00:00:00+08:00",
              "previous": {"label": "2026-09", "start": "2026-09-01T00:00:00+08:00",
                           "end": "2026-10-01T00:00:00+08:00"},
              "last_year": {"label": "2025-10", "start": "2025-10-01T00:00:00+08:00",
                            "end": "2025-11-01T00:00:00+08:00"}}
    cls = ["hot", "hot", "hot", "hot", "none", "none", "none", "none", "cold", "none", "cold", "none"]
    p = [0.001, 0.01, 0.03, 0.04, 0.4, 0.5, 0.6, 0.3, 0.02, 0.7, 0.008, 0.9]
    z = [3.1, 2.6, 2.0, 1.9, 0.3, 0.1, -0.2, 0.5, -2.1, 0.0, -2.7, 0.2]
    return {
        "schema": "shiyu.report.analysis/1",
        "unit": {"code": "320102000000", "name": "玄武区", "level": 2},
        "period": period,
        "generated_at": "2026-11-29T11:00:00+00:00",
        "source": "database",
        "streams": [
            {"stream": "call", **_row(120, 100, 90)},
            {"stream": "case", **_row(38, 40, 45)},
            {"stream": "opinion", **_row(210, 190, None)},
            {"stream": "social", **_row(96, 96, 0)},
        ],
        "kinds": [
            {"kind": "event", **_row(60, 55, 50)},
            {"kind": "dispute", **_row(24, 30, 20)},
            {"kind": "petition", **_row(12, 11, 14)},
            {"kind": "hotline", **_row(180, 170, 160)},
        ],
        "categories": [
            {"stream": "call", "code": "0101", "name": "盗窃", **_row(30, 25, 20)},
            {"stream": "call", "code": "0102", "name": "电信网络诈骗", **_row(22, 30, 15)},
            {"stream": "call", "code": "0103", "name": "打架斗殴", **_row(15, 15, 18)},
            {"stream": "case", "code": "0201", "name": "盗窃案", **_row(10, 12, 9)},
            {"stream": "case", "code": "0202", "name": "诈骗案", **_row(8, 6, 7)},
            {"stream": "item", "code": "0301", "name": "噪声扰民", **_row(40, 35, 30)},
            {"stream": "item", "code": "0302", "name": "物业纠纷", **_row(33, 36, None)},
        ],
        "rates": {
            "closure_rate": _rate(0.82, 82, 100, 0.8, 0.7),
            "on_time_rate": _rate(0.9, 74, 82, 0.88, 0.85),
            "satisfaction": _rate(4.3, None, 55, 4.1, 4.0),
            "satisfied_rate": _rate(0.91, 50, 55, 0.9, None),
            "repeat_petition_rate": _rate(0.0833, 1, 12, 0.0909, 0.1429),
            "dispute_resolution_rate": _rate(0.9583, 23, 24, 0.9, 0.95),
        },
        "townships": [
            {"rank": 1, "code": "320102001000", "name": "梅园新村街道", "calls": 40, "cases": 12, "items": 80,
             "calls_previous": 30, "cases_previous": 10, "items_previous": 70, "score": 52, "mom": 0.3, "overdue": 3},
            {"rank": 2, "code": "320102002000", "name": "新街口街道", "calls": 30, "cases": 10, "items": 60,
             "calls_previous": 35, "cases_previous": 10, "items_previous": 66, "score": 40, "mom": -0.1111,
             "overdue": 1},
            {"rank": 3, "code": "320102003000", "name": "玄武门街道", "calls": 20, "cases": 6, "items": 40,
             "calls_previous": 20, "cases_previous": 6, "items_previous": 41, "score": 26, "mom": 0.0, "overdue": 0},
        ],
        "daily": [{"date": f"2026-10-{d:02d}", "call": 3 + d % 5, "case": 1 + d % 3, "opinion": 6 + d % 4,
                   "social": 2 + d % 6} for d in range(1, 32)],
        "hotspots": {"method": "getis-ord-gi*", "weights": "queen, binary", "permutations": 999, "seed": 12345,
                     "alpha": 0.05, "hot": 4, "cold": 2,
                     "features": [{"id": g, "value": float(10 - i), "z": z[i], "p_sim": p[i], "cls": cls[i]}
                                  for i, g in enumerate(GRIDS)]},
        "warnings": [
            {"kind": "rising", "unit_code": "320102001000", "unit_name": "梅园新村街道", "category": "电信网络诈骗",
             "method": "poisson", "current": 22, "expected": 9.5, "threshold": 16, "score": 3.2,
             "message_zh": "梅园新村街道电信网络诈骗警情异常上升：22 起，预期 9.5 起。",
             "message_en": "Telecom fraud calls rose sharply in Meiyuan Xincun: 22 against 9.5 expected."},
        ],
        "summary": {"zh": ["2026-10，玄武区共接报警情、案情及群众诉求、社会事件 464 起。",
                           "警情 120 起，环比 +20.0%，同比 +33.3%。"],
                    "en": ["In 2026-10, 玄武区 recorded 464 police calls, cases, citizen requests and social events."]},
    }


def sample_shapes() -> dict:
    """A 4 x 3 block of small squares near Nanjing (lon/lat degrees), keyed by grid code."""
    return {g: box(118.80 + 0.01 * (i % 4), 32.05 + 0.01 * (i // 4), 118.81 + 0.01 * (i % 4), 32.06 + 0.01 * (i // 4))
            for i, g in enumerate(GRIDS)}


def _text(pdf: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(pdf))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def _section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="[a-z]+-([a-z_]+)"', html)


@pytest.fixture(scope="module")
def police_pdf() -> bytes:
    return render_pdf(sample_report(), audience="police", shapes=sample_shapes())


def test_font_is_found_and_registered_with_matplotlib() -> None:
    path = fonts.cjk_font_path()
    assert path.is_file() and path.name == "NotoSansCJKsc-Regular.otf"
    assert fonts.use_cjk_in_matplotlib() == fonts.use_cjk_in_matplotlib() == "Noto Sans CJK SC"


def test_html_has_title_audience_and_figures() -> None:
    html = render_html(sample_report(), audience="police", shapes=sample_shapes())
    assert "玄武区2026年10月社会治安形势分析报告" in html
    assert LABELS_ZH["audience"]["police"] in html and "报送：公安机关" in html
    assert "生成时间：2026-11-29 19:00" in html  # UTC shown in Beijing time
    assert "统计周期：2026-10-01 至 2026-10-31" in html
    assert "+20.0%" in html and "\u22125.0%" in html and "82.0%" in html and "4.30" in html
    assert "梅园新村街道" in html and "电信网络诈骗" in html
    assert html.count("data:image/svg+xml;base64,") == 4  # streams, daily, townships, map
    assert "built-in method" not in html and "Undefined" not in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_formatting() -> None:
    assert [fmt_change(v) for v in (0.2, -0.05, None, 0.0, -0.0001)] == ["+20.0%", "\u22125.0%", "\u2014", "0.0%",
                                                                          "0.0%"]
    assert fmt_rate(0.8234) == "82.3%" and fmt_rate(4.3, "satisfaction") == "4.30" and fmt_rate(None) == "\u2014"


def test_audiences_differ_in_title_and_order() -> None:
    report = sample_report()
    orders, headings = {}, {}
    for audience in AUDIENCES:
        html = render_html(report, audience=audience)
        orders[audience] = _section_ids(html)
        headings[audience] = LABELS_ZH["audience"][audience]
        assert orders[audience] == list(section_order(audience)) == list(SECTIONS[audience])
        assert headings[audience] in html
    assert len({tuple(o) for o in orders.values()}) == 3
    assert len(set(headings.values())) == 3
    assert orders["police"][0] == "calls_cases"
    assert orders["government"][0] == "summary"
    assert orders["committee"][0] == "disputes"
    for order in orders.values():  # every audience gets the figures every other one gets
        assert {"overview", "rates", "warnings", "townships", "hotspots", "calls_cases", "opinion"} <= set(order)


def test_english_locale() -> None:
    html = render_html(sample_report(), audience="government", locale="en")
    assert "Social Order and Safety Analysis: 玄武区, October 2026" in html
    assert "For the Party committee and government" in html
    assert "Telecom fraud calls rose sharply" in html
    assert "环比" not in html


def test_unknown_audience_or_locale_is_invalid() -> None:
    with pytest.raises(Invalid):
        render_html(sample_report(), audience="press")
    with pytest.raises(Invalid):
        render_html(sample_report(), audience="police", locale="fr")


def test_missing_shapes_or_failed_gi_star_replace_the_map_with_a_sentence() -> None:
    html = render_html(sample_report(), audience="police")
    assert LABELS_ZH["hot_no_shapes"] in html
    assert html.count("data:image/svg+xml;base64,") == 3

    report = sample_report()
    report["hotspots"] = {"error": "too few grids"}
    html = render_html(report, audience="police", shapes=sample_shapes())
    assert "本期未能进行热点分析：too few grids" in html
    assert html.count("data:image/svg+xml;base64,") == 3


def test_empty_lists_and_nulls_render() -> None:
    report = sample_report()
    for key in ("categories", "townships", "daily", "warnings"):
        report[key] = []
    report["hotspots"]["features"] = []
    report["summary"] = {"zh": [], "en": []}
    for s in report["streams"]:
        s.update(current=None, mom=None)
    for r in report["rates"].values():
        r.update(value=None, numerator=None, denominator=0)
    html = render_html(report, audience="committee", shapes=sample_shapes())
    assert LABELS_ZH["no_warnings"] in html and LABELS_ZH["no_summary"] in html


def test_charts_render_chinese_as_outlines() -> None:
    report = sample_report()
    svg = charts.township_ranking_svg(report["townships"], LABELS_ZH)
    assert svg.lstrip().startswith("<?xml") and not re.search(r"<text[\s>]", svg)
    assert 'id="NotoSansCJKsc-Regular-' in svg  # Chinese glyphs drawn as outlines of the CJK font
    svg = charts.hotspot_map_svg(report["hotspots"], sample_shapes(), LABELS_ZH)
    for color in (charts.HOT_COLORS[99], charts.HOT_COLORS[95], charts.COLD_COLORS[99], charts.COLD_COLORS[95],
                  charts.NONE_COLOR):
        assert color in svg
    assert charts.hotspot_map_svg(report["hotspots"], {}, LABELS_ZH) is None


def test_map_draws_holes_multipolygons_and_grids_without_result() -> None:
    ring = box(118.80, 32.05, 118.84, 32.08).difference(box(118.81, 32.06, 118.82, 32.07))
    shapes = {"a": ring, "b": MultiPolygon([box(118.84, 32.05, 118.85, 32.06), box(118.84, 32.07, 118.85, 32.08)]),
              "c": box(118.85, 32.05, 118.86, 32.08), "empty": Polygon()}
    hotspots = {"features": [{"id": "a", "cls": "hot", "p_sim": 0.08}, {"id": "b", "cls": "cold", "p_sim": 0.001}]}
    svg = charts.hotspot_map_svg(hotspots, shapes, LABELS_ZH)
    assert charts.HOT_COLORS[90] in svg and charts.COLD_COLORS[99] in svg and charts.NO_DATA_COLOR in svg


def test_unit_polygon_in_shapes_is_the_outline_not_a_grid() -> None:
    shapes = sample_shapes()
    shapes["320102000000"] = box(118.795, 32.045, 118.815, 32.085)
    html = render_html(sample_report(), audience="police", shapes=shapes)
    svgs = [base64.b64decode(m).decode() for m in re.findall(r'data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)', html)]
    maps = [svg for svg in svgs if charts.HOT_COLORS[99] in svg and charts.NONE_COLOR in svg]
    assert len(maps) == 1
    assert "#9a9a9a" not in maps[0]  # no grid "without result": the unit polygon is only the outline
    shapes["unlisted"] = box(118.70, 32.0, 118.71, 32.01)
    html = render_html(sample_report(), audience="police", shapes=shapes)
    assert any("#9a9a9a" in base64.b64decode(m).decode()
               for m in re.findall(r'data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)', html))


def test_pdf_opens_with_chinese_text_and_no_tofu(police_pdf: bytes) -> None:
    reader, text = _text(police_pdf)
    assert len(reader.pages) >= 2
    words = ("玄武区", "社会治安形势分析报告", "环比", "同比", "警情", "梅园新村街道", "电信网络诈骗", "报送：公安机关")
    for word in words:
        assert word in text, word
    assert not any(ch in text for ch in TOFU)
    # Page numbers in the footer.
    assert re.search(r"\u2014\s*2\s*\u2014", text)


def test_pdf_embeds_the_cjk_font(police_pdf: bytes) -> None:
    reader = PdfReader(io.BytesIO(police_pdf))
    names, embedded = set(), False
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            names.add(str(font["/BaseFont"]))
            for desc in font.get("/DescendantFonts", []):
                descriptor = desc.get_object()["/FontDescriptor"].get_object()
                embedded |= any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3"))
    assert any("Noto" in n and "CJK" in n for n in names), names
    assert not any("DejaVu" in n for n in names), names  # nothing fell back to the Latin font
    assert embedded


def test_pdf_has_vector_charts(police_pdf: bytes) -> None:
    reader = PdfReader(io.BytesIO(police_pdf))
    xobjects = 0
    for page in reader.pages:
        xobjects += len(page["/Resources"].get("/XObject", {}))
    content = sum(len(page.get_contents().get_data()) for page in reader.pages)
    assert xobjects >= 4 or content > 100_000, (xobjects, content)


@pytest.mark.parametrize("audience", ["government", "committee"])
def test_other_audiences_render_a_pdf(audience: str) -> None:
    reader, text = _text(render_pdf(sample_report(), audience=audience))
    assert LABELS_ZH["audience"][audience] in text and LABELS_ZH["sections"][SECTIONS[audience][0]] in text
    assert "玄武区" in text and not any(ch in text for ch in TOFU)


def test_english_pdf() -> None:
    _, text = _text(render_pdf(sample_report(), audience="committee", locale="en"))
    # Spaces survive text extraction (a ToUnicode that mapped the space glyph to U+000A broke this once).
    assert "Social Order and Safety Analysis: 玄武区, October 2026" in text
    assert "Disputes and petitions" in text and not any(ch in text for ch in TOFU)


def test_html_many_holds_every_audience_in_turn() -> None:
    html = render_html_many(sample_report(), audiences=AUDIENCES, shapes=sample_shapes())
    assert re.findall(r'<article class="report audience-([a-z]+)"', html) == list(AUDIENCES)
    assert _section_ids(html) == [key for a in AUDIENCES for key in SECTIONS[a]]
    assert html.count("data:image/svg+xml;base64,") == 12


def test_pdf_many_pages_each_part_from_one() -> None:
    calls: list[int] = []
    pdf = render_pdf_many(sample_report(), audiences=("police", "committee"), on_part=lambda: calls.append(1))
    assert len(calls) == 2
    reader = PdfReader(io.BytesIO(pdf))
    texts = [page.extract_text() for page in reader.pages]
    starts = [i for i, t in enumerate(texts) if LABELS_ZH["audience"]["committee"] in t]
    assert starts and starts[0] > 0 and LABELS_ZH["audience"]["police"] in texts[0]
    assert re.search(r"\u2014\s*1\s*\u2014", texts[starts[0]])  # the second part starts again at page 1
    with pytest.raises(Invalid):
        render_pdf_many(sample_report(), audiences=())
