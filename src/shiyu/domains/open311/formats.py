"""GeoReport v2 response bodies in its two formats 响应格式: XML (required by the spec) and JSON.

One structure serves both: JSON is the structure itself; XML names the root element and each
list's items as the spec's examples do (``<services><service>``, ``<errors><error>`` ...).
Booleans read ``true``/``false``, a missing value is an empty element, and text is stripped
of characters XML 1.0 cannot carry.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from fastapi.responses import Response

from shiyu.domains.open311.rules import FORMATS

#: The element name of a list's items, by the list's element name.
ITEMS = {
    "services": "service",
    "attributes": "attribute",
    "values": "value",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
}
_BAD_XML = re.compile(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _BAD_XML.sub("", str(value))


def _fill(parent: ET.Element, name: str, value: Any) -> None:
    el = ET.SubElement(parent, name)
    _put(el, name, value)


def _put(el: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _fill(el, k, v)
    elif isinstance(value, list):
        child = ITEMS.get(name, "item")
        for v in value:
            _fill(el, child, v)
    else:
        el.text = _text(value)


def to_xml(root: str, data: Any) -> bytes:
    el = ET.Element(root)
    _put(el, root, data)
    return DECLARATION + ET.tostring(el, encoding="unicode").encode("utf-8")


def to_json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def respond(fmt: str, root: str, data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = to_json(data) if fmt == "json" else to_xml(root, data)
    return Response(body, status_code=status, media_type=FORMATS["json" if fmt == "json" else "xml"],
                    headers=headers)


def error_body(status: int, description: str) -> list[dict[str, Any]]:
    return [{"code": status, "description": description}]


def format_of(path: str) -> str:
    """The format a path asks for: JSON for ``.json``, otherwise the spec's required XML."""
    return "json" if path.lower().endswith(".json") else "xml"
