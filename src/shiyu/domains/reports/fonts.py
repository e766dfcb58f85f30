"""The CJK font 中文字体 used by the report charts (matplotlib) and the PDF (WeasyPrint).

The servers carry no system CJK font, so both point at Noto Sans CJK SC shipped inside the
``mplfonts`` package. Matplotlib renders chart text as paths (``svg.fonttype = "path"``), so the
SVG charts need no font at all. WeasyPrint gets an ``@font-face`` rule: with ``text`` given, the
rule embeds a subset of the font holding only those characters as a ``data:`` URL. The full
font is 16 MB with 65,535 glyphs and WeasyPrint's own subsetting keeps every glyph id, which
costs about five seconds per document; a small subset made first brings that to well under one.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import io
import threading
from pathlib import Path

FONT_FILE = "NotoSansCJKsc-Regular.otf"
#: The family name the report CSS and the charts use.
FONT_FAMILY = "Noto Sans CJK SC"
#: Characters every subset carries besides the document's own: printable ASCII (page numbers,
#: figures) and the punctuation the renderer itself adds.
_ALWAYS = frozenset(chr(c) for c in range(0x20, 0x7F)) | frozenset("\u2014\u2212\u00b7\uff08\uff09\uff1a")

_lock = threading.Lock()
_matplotlib_ready = False


@functools.cache
def cjk_font_path() -> Path:
    """Path of ``NotoSansCJKsc-Regular.otf`` inside the installed ``mplfonts`` package."""
    path = Path(str(importlib.resources.files("mplfonts") / "fonts" / FONT_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"CJK font not found: {path} (is mplfonts installed?)")
    return path


def use_cjk_in_matplotlib() -> str:
    """Register the CJK font with matplotlib and make it the default sans-serif; idempotent.

    Also sets ``svg.fonttype = "path"`` (text drawn as outlines, so SVGs need no font) and
    ``axes.unicode_minus``. Returns the font's family name as matplotlib knows it.
    """
    global _matplotlib_ready
    import matplotlib
    from matplotlib import font_manager

    path = cjk_font_path()
    name = font_manager.FontProperties(fname=str(path)).get_name()
    with _lock:
        if not _matplotlib_ready:
            if not any(Path(f.fname) == path for f in font_manager.fontManager.ttflist):
                font_manager.fontManager.addfont(str(path))
            _matplotlib_ready = True
        rc = matplotlib.rcParams
        rc["font.family"] = "sans-serif"
        fallbacks = [f for f in rc["font.sans-serif"] if f != name]
        rc["font.sans-serif"] = [name, *fallbacks]
        rc["svg.fonttype"] = "path"
        rc["axes.unicode_minus"] = True
    return name


@functools.lru_cache(maxsize=16)
def _subset(chars: frozenset[str]) -> bytes:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False
    font = TTFont(str(cjk_font_path()), lazy=True)
    try:
        subsetter = subset.Subsetter(options)
        subsetter.populate(text="".join(sorted(chars)))
        subsetter.subset(font)
        out = io.BytesIO()
        font.save(out)
    finally:
        font.close()
    return out.getvalue()


def subset_font(text: str) -> bytes:
    """The CJK font (OpenType/CFF bytes) cut down to the characters of ``text`` plus ASCII.

    Control characters are left out: the font maps U+000A to its space glyph, and a PDF writer
    that builds ToUnicode from the font's cmap would then turn every space into a line break.
    """
    return _subset(frozenset(ch for ch in text if ch >= " ") | _ALWAYS)


def font_face_css(text: str | None = None) -> str:
    """An ``@font-face`` rule for :data:`FONT_FAMILY`.

    With ``text``, the font is a subset covering those characters, embedded as a ``data:`` URL
    (fast to render, self-contained). Without, the rule points at the full font file
    (``file://`` URL; fine for WeasyPrint on this machine, useless for a remote browser, which
    falls back to its own fonts through the family list).
    """
    if text is None:
        src = f'url("{cjk_font_path().as_uri()}") format("opentype")'
    else:
        data = base64.b64encode(subset_font(text)).decode("ascii")
        src = f'url("data:font/otf;base64,{data}") format("opentype")'
    return f'@font-face {{ font-family: "{FONT_FAMILY}"; font-style: normal; font-weight: 400; src: {src}; }}'
