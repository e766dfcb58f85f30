"""API shapes of work items 工单. Personal data is masked on every Read model."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Kind = Literal["event", "dispute", "petition", "hotline"]
Priority = Literal["low", "normal", "high", "urgent"]


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50)
    id_number: str | None = Field(default=None, max_length=32, description="resident ID 居民身份证号 (GB 11643)")
    phone: str | None = Field(default=None, max_length=20, description="mobile number")
    address: str | None = Field(default=None, max_length=200)


class PartyIn(PersonIn):
    role: Literal["applicant", "respondent", "petitioner", "caller", "other"] = "applicant"


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=200)
    content_type: str = Field(max_length=64)
    data: str = Field(description="base64", max_length=700_000)


class DisputeIn(BaseModel):
    """矛盾纠纷: type is a dispute category code; mediation channel 调解渠道."""

    model_config = ConfigDict(extra="forbid")

    risk_level: Literal["low", "medium", "high"] = "low"
    mediation_channel: Literal["people", "lawyer", "psychologist", "industry", "non_litigation", "court"] = "people"


class PetitionIn(BaseModel):
    """信访: channel letter 来信 | visit 来访 | online 网上信访."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["letter", "visit", "online"] = "online"
    matter: str = Field(default="", max_length=500, description="the matter 信访事项, for repeat detection")
    received_at: AwareDatetime | None = None


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    title: str = Field(min_length=2, max_length=200)
    description: str = Field(default="", max_length=4000)
    category: str | None = Field(default=None, max_length=32)
    priority: Priority = "normal"
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    address: str | None = Field(default=None, max_length=200)
    unit: str | None = Field(default=None, max_length=32, description="unit code when no location is given")
    source: Literal["grid", "citizen", "hotline", "department", "police", "sensor", "letter", "visit", "online",
                    "open311"] = "grid"
    channel: str | None = Field(default=None, max_length=64)
    reporter: PersonIn | None = None
    parties: list[PartyIn] = Field(default_factory=list, max_length=20)
    dispute: DisputeIn | None = None
    petition: PetitionIn | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=5)


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000, description="reason or remark")
    departments: list[str] = Field(default_factory=list, max_length=20, description="dispatch / whistle targets")
    passed: bool | None = Field(default=None, description="verify: did the handling pass")
    rating: int | None = Field(default=None, ge=1, le=5, description="rate: 1 (poor) .. 5 (very satisfied)")
    days: int | None = Field(default=None, ge=1, le=90, description="extend: days")
    target: int | None = Field(default=None, ge=1, description="merge: the item this one is folded into")
    reply: str | None = Field(default=None, max_length=4000, description="reply to the reporter 答复")


class PartyRead(BaseModel):
    role: str
    name: str
    id_number: str | None
    phone: str | None
    address: str | None


class AssignmentRead(BaseModel):
    department_code: str
    department_name: str | None = None
    mode: str
    state: str
    assigned_at: datetime
    ack_due_at: datetime | None
    acknowledged_at: datetime | None
    reported_at: datetime | None
    report: str | None


class ItemRead(BaseModel):
    id: int
    number: str
    kind: str
    status: str
    status_label: str
    title: str
    description: str
    category: str | None
    category_name: str | None = None
    priority: str
    source: str
    channel: str | None
    lon: float | None
    lat: float | None
    address: str | None
    grid_code: str | None
    unit_code: str
    owner_code: str
    reporter_name: str | None
    reporter_phone: str | None
    created_at: datetime
    updated_at: datetime
    received_at: datetime
    step: str | None
    due_at: datetime | None
    handle_due_at: datetime | None
    sla_state: str
    escalation_level: int
    extensions: int
    whistle: bool
    supervised: bool
    rating: int | None
    replied: bool
    reply_text: str | None
    merged_into: int | None
    repeat_of: int | None
    data: dict[str, Any]
    version: int
    parties: list[PartyRead] = Field(default_factory=list)
    assignments: list[AssignmentRead] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list, description="actions the lifecycle allows now")
    duplicates: list[dict[str, Any]] = Field(default_factory=list)
    attachments: list[dict[str, Any]] = Field(default_factory=list)


class ItemSummary(BaseModel):
    id: int
    number: str
    kind: str
    status: str
    title: str
    category: str | None
    priority: str
    unit_code: str
    owner_code: str
    grid_code: str | None
    created_at: datetime
    due_at: datetime | None
    sla_state: str
    supervised: bool
    whistle: bool


class ItemPage(BaseModel):
    items: list[ItemSummary]
    total: int
    limit: int
    offset: int


class TimelineRead(BaseModel):
    at: datetime
    actor: str
    role: str | None
    unit_code: str | None
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None
    data: dict[str, Any]


class SupervisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=2, max_length=1000)
    days: int = Field(default=3, ge=1, le=60)


class SupervisionRead(BaseModel):
    id: int
    item_id: int
    issued_by: str
    note: str
    issued_at: datetime
    due_at: datetime
    resolved_at: datetime | None
    state: str


class TickReport(BaseModel):
    now: datetime
    due_soon: list[int]
    overdue: list[int]
    escalated: list[int]
    supervision_overdue: list[int]
