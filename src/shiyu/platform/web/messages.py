"""User-facing messages for API errors, in Simplified Chinese (default) and English.

Keys are the stable error ``code`` values raised by services and the validation
error types of Pydantic. The web UI uses its own Babel catalogues; these are the
API's Problem Details titles and details.
"""

from __future__ import annotations

from typing import Final

SUPPORTED: Final = ("zh-CN", "en")

TITLES: Final[dict[int, tuple[str, str]]] = {
    400: ("请求有误", "Bad request"),
    401: ("未登录或登录已失效", "Not authenticated"),
    403: ("无权执行此操作", "Forbidden"),
    404: ("未找到", "Not found"),
    405: ("不支持此请求方法", "Method not allowed"),
    409: ("与当前状态冲突", "Conflict"),
    412: ("前提条件不满足", "Precondition failed"),
    413: ("请求内容过大", "Payload too large"),
    415: ("不支持的内容类型", "Unsupported media type"),
    422: ("输入有误", "Invalid input"),
    423: ("账户已锁定", "Account locked"),
    429: ("请求过于频繁", "Too many requests"),
    500: ("服务器内部错误", "Internal server error"),
}

DETAILS: Final[dict[str, tuple[str, str]]] = {
    "not_found": ("请求的对象不存在或不在您的辖区内。", "The requested object does not exist or is outside your jurisdiction."),
    "route_not_found": ("没有这个地址。", "No such address."),
    "no_grid_here": ("该位置不在您辖区内的任何网格中。", "This point lies in no grid of your jurisdiction."),
    "forbidden_action": ("您的角色不能执行此操作。", "Your role may not do this."),
    "unauthorized": ("请先登录。", "Please log in."),
    "bad_credentials": ("用户名或密码错误。", "Wrong username or password."),
    "locked": ("连续登录失败次数过多，账户已临时锁定，请稍后再试。",
               "Too many failed logins; the account is locked for a while."),
    "inactive": ("账户已停用。", "The account is disabled."),
    "totp_required": ("请输入动态口令。", "Enter your one-time code."),
    "bad_totp": ("动态口令错误。", "Wrong one-time code."),
    "totp_not_enrolled": ("该账户须先绑定动态口令。", "This account must enrol a one-time code first."),
    "totp_already_enabled": ("已启用动态口令。", "One-time codes are already enabled."),
    "totp_not_started": ("尚未开始绑定动态口令。", "No one-time code enrolment in progress."),
    "payload_too_large": ("请求内容超过大小限制。", "The request body exceeds the size limit."),
    "invalid": ("输入有误，请检查标出的字段。", "Invalid input; check the fields named."),
    "bad_features": ("GeoJSON 中有要素不合格，未写入任何数据。", "Some GeoJSON features are invalid; nothing was written."),
    "unknown_layer": ("网格图层不存在。", "Unknown grid layer."),
    "unknown_unit": ("单位代码不存在。", "Unknown unit code."),
    "unknown_role": ("角色不存在。", "Unknown role."),
    "bad_unit_code": ("单位代码不符合区划代码规则。", "The unit code does not follow the division code rules."),
    "bad_username": ("用户名须为3-64位小写字母、数字或 _ . -，以字母开头。",
                     "Username: 3-64 lower-case letters, digits, _ . -, starting with a letter."),
    "username_taken": ("用户名已被使用。", "Username already taken."),
    "password_too_short": ("密码至少8位。", "The password needs at least 8 characters."),
    "password_too_simple": ("密码须包含大写字母、小写字母、数字、符号中的至少三类。",
                            "The password needs three of: upper case, lower case, digits, symbols."),
    "phone_format": ("手机号码格式不正确。", "Not a valid mobile number."),
    "reason_required": ("请填写查看原因（至少4个字）。", "Give a reason (at least 4 characters)."),
    "internal": ("服务器内部错误，已记录。请稍后重试。", "Internal error, logged. Please try again later."),
    "method_not_allowed": ("不支持此请求方法。", "Method not allowed."),
    "conflict": ("与当前状态冲突。", "Conflict with the current state."),
    "stale_etag": ("该事项已被他人更新，请刷新后重试。", "The item changed since you read it; reload and try again."),
    "precondition_required": ("请求须带 If-Match（事项的 ETag）。", "Send If-Match with the item's ETag."),
    "transition_not_allowed": ("事项当前为「{status_zh}」（{status}），不能{action_zh}；可{action_zh}的状态：{allowed_zh}。",
                               "Cannot {action} an item that is {status}; allowed when {allowed}."),
    "reply_required": ("信访件须先答复再结案。", "A petition closes only after its reply is recorded."),
    "idempotency_key_required": ("请求须带 Idempotency-Key。", "Send an Idempotency-Key header."),
    "idempotency_mismatch": ("同一 Idempotency-Key 已用于不同内容。", "This Idempotency-Key was used with another body."),
    "not_assigned": ("您所在部门未被派遣此事项。", "Your unit is not assigned to this item."),
    "not_owner": ("只有责任中心可以执行此操作。", "Only the owning centre may do this."),
    "extension_limit": ("延期次数已用完。", "No more extensions allowed."),
    "top_level": ("已是最高层级，无法再上报。", "Already owned by the top level."),
    "nul_character": ("输入中不能包含空字符（0x00）。", "Text may not contain NUL (0x00) characters."),
    "police_call": ("警务警情由公安机关处置，不能分流为工单。", "A police call is handled by the police, not diverted."),
    "already_diverted": ("该警情已分流为工单。", "The call was diverted already."),
    "not_located": ("该警情既无网格位置也无所属单位。", "The call has neither a point in a grid nor a unit."),
    "period_in_future": ("统计月份尚未开始。", "The period has not started yet."),
    "as_of_in_future": ("预警日期不能晚于今天。", "The day judged must not be in the future."),
    "hotspot_too_few": ("该单位的统一网格不足3个，无法进行热点分析。", "Gi* needs at least three unified grids in the unit."),
    "hotspot_period": ("月份格式应为 YYYY-MM，例如 2026-11。", "The month must be YYYY-MM, e.g. 2026-11."),
}

#: Pydantic / FastAPI validation error types.
VALIDATION: Final[dict[str, tuple[str, str]]] = {
    "missing": ("必填", "Field required"),
    "json_invalid": ("JSON 格式错误", "Malformed JSON"),
    "json_type": ("须为 JSON 对象", "Must be a JSON object"),
    "model_attributes_type": ("须为对象", "Must be an object"),
    "dict_type": ("须为对象", "Must be an object"),
    "list_type": ("须为列表", "Must be a list"),
    "string_type": ("须为文本", "Must be text"),
    "string_too_short": ("内容太短", "Too short"),
    "string_too_long": ("内容太长", "Too long"),
    "string_pattern_mismatch": ("格式不正确", "Wrong format"),
    "int_parsing": ("须为整数", "Must be a whole number"),
    "int_type": ("须为整数", "Must be a whole number"),
    "int_from_float": ("须为整数", "Must be a whole number"),
    "float_parsing": ("须为数字", "Must be a number"),
    "float_type": ("须为数字", "Must be a number"),
    "finite_number": ("须为有限数字", "Must be a finite number"),
    "bool_parsing": ("须为是/否", "Must be true or false"),
    "bool_type": ("须为是/否", "Must be true or false"),
    "greater_than": ("数值太小", "Too small"),
    "greater_than_equal": ("数值太小", "Too small"),
    "less_than": ("数值太大", "Too large"),
    "less_than_equal": ("数值太大", "Too large"),
    "literal_error": ("取值不在允许范围内", "Not one of the allowed values"),
    "enum": ("取值不在允许范围内", "Not one of the allowed values"),
    "extra_forbidden": ("不允许的字段", "Unknown field"),
    "datetime_parsing": ("须为 ISO 8601 时间", "Must be an ISO 8601 date-time"),
    "datetime_from_date_parsing": ("须为 ISO 8601 时间", "Must be an ISO 8601 date-time"),
    "timezone_aware": ("时间须带时区", "The date-time needs a time zone"),
    "date_parsing": ("须为日期 YYYY-MM-DD", "Must be a date YYYY-MM-DD"),
    "value_error": ("取值无效", "Invalid value"),
}


def pick_locale(accept_language: str | None, default: str = "zh-CN") -> str:
    """Choose zh-CN or en from an Accept-Language header (quality values honoured)."""
    if not accept_language:
        return default
    best, best_q = default, -1.0
    for part in accept_language.split(","):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = lang.strip().lower()
        loc = "zh-CN" if lang.startswith("zh") else "en" if lang.startswith("en") else None
        if loc and q > best_q:
            best, best_q = loc, q
    return best


def _pick(pair: tuple[str, str], locale: str) -> str:
    return pair[0] if locale == "zh-CN" else pair[1]


def title(status: int, locale: str) -> str:
    return _pick(TITLES.get(status, TITLES[400] if status < 500 else TITLES[500]), locale)


def detail(code: str, locale: str, fallback: str = "") -> str:
    pair = DETAILS.get(code)
    return _pick(pair, locale) if pair else fallback


def detail_with(code: str, locale: str, params: dict[str, object] | None, fallback: str = "") -> str:
    """The localised detail for ``code`` with its ``{placeholders}`` filled from ``params``."""
    text = detail(code, locale, "")
    if not text:
        return fallback
    try:
        return text.format(**(params or {}))
    except (KeyError, IndexError, ValueError):
        return fallback or text.split("{")[0]


def validation_message(err_type: str, locale: str, fallback: str) -> str:
    pair = VALIDATION.get(err_type)
    return _pick(pair, locale) if pair else fallback
