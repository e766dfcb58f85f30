"""UI text comes from the message catalogues: no hard-coded strings in templates."""

from __future__ import annotations

import re
from pathlib import Path

from shiyu.domains.items.rules import ACTIONS, KINDS, PRIORITIES, STATES
from shiyu.platform.authz.rules import ROLES
from shiyu.platform.ui.i18n import catalog_ids, current_locale, gettext_

SRC = Path(__file__).resolve().parents[1] / "src" / "shiyu"
CJK = re.compile(r"[\u4e00-\u9fff]")
MSGID = re.compile(r"""_\(\s*(["'])(.+?)\1""")


def _template_ids() -> set[str]:
    ids: set[str] = set()
    for p in SRC.rglob("*.html"):
        ids.update(m.group(2) for m in MSGID.finditer(p.read_text(encoding="utf-8")))
    return ids


def test_templates_have_no_chinese_literals() -> None:
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.html") if CJK.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"Chinese text belongs in locales/zh_CN, not in templates: {offenders}"


def test_every_template_message_is_translated() -> None:
    zh = catalog_ids("zh-CN")
    ids = {i for i in _template_ids() if not i.endswith(" ")}
    # Keys built in templates from a prefix and a value ("step " ~ item.step, ...).
    ids |= {f"mode {m}" for m in ("dispatch", "whistle")}
    ids |= {f"assignment {s}" for s in ("assigned", "acknowledged", "reported", "returned", "done")}
    ids |= {f"supervision {s}" for s in ("open", "resolved", "overdue")}
    ids |= {f"step {s}" for s in ("accept", "dispatch", "acknowledge", "handle", "verify", "extension", "supervision")}
    ids |= set(STATES) | set(ACTIONS) | set(KINDS) | set(PRIORITIES) | set(ROLES)
    missing = sorted(i for i in ids if not zh.get(i))
    assert not missing, f"messages without a zh-CN translation: {missing}"


def test_default_locale_is_chinese_and_english_switches() -> None:
    assert gettext_("Inbox") == "待办"
    token = current_locale.set("en")
    try:
        assert gettext_("Inbox") == "Inbox"
        assert gettext_("mode whistle") == "whistle"
    finally:
        current_locale.reset(token)
