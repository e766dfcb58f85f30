"""Message catalogues 界面语言: Simplified Chinese by default, English second.

Templates use English message ids (``_("Inbox")``); ``locales/zh_CN/.../shiyu.po``
translates them. The .po files are compiled in memory at start-up (no build step)."""

from __future__ import annotations

import gettext
import io
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"
_DIR = Path(__file__).parent / "locales"
current_locale: ContextVar[str] = ContextVar("shiyu_locale", default=DEFAULT_LOCALE)


def _folder(locale: str) -> str:
    return locale.replace("-", "_")


@lru_cache(maxsize=4)
def translations(locale: str) -> gettext.NullTranslations:
    po = _DIR / _folder(locale) / "LC_MESSAGES" / "shiyu.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=_folder(locale))
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def gettext_(message: str) -> str:
    return translations(current_locale.get()).gettext(message)


def ngettext_(singular: str, plural: str, n: int) -> str:
    return translations(current_locale.get()).ngettext(singular, plural, n)


def catalog_ids(locale: str = "zh-CN") -> dict[str, str]:
    po = _DIR / _folder(locale) / "LC_MESSAGES" / "shiyu.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=_folder(locale))
    return {str(m.id): str(m.string) for m in catalog if m.id}


def pick(value: str | None) -> str:
    if value in LOCALES:
        return value
    if value and value.lower().startswith("en"):
        return "en"
    return DEFAULT_LOCALE
