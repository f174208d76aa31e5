"""Events of the service catalogue owned by intake (topic ``intake.catalogue.v1``).

``request_id`` carries the service code here (the stream's key), so that all changes to one
service keep their order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from civicgrid_contracts.envelope import EventPayload, register, upcaster
from civicgrid_contracts.values import Handler, TimeLimits, Value


class AnswerValue(Value):
    """One answer a list question offers, named in both languages."""

    key: str
    name_zh: str | None = Field(default=None, description="Chinese name; None when the catalogue holds only English")
    name_en: str | None = Field(default=None, description="English name; None when the catalogue holds only Chinese")


class ServiceQuestion(Value):
    """One Open311 attribute of a service: a question residents answer, asked in both languages.
    A question written before the catalogue held both languages may lack one of its texts."""

    code: str
    datatype: str = Field(description="Open311's datatype: string, number, datetime, text, singlevaluelist, "
                                      "multivaluelist")
    required: bool = False
    order: int = 1
    description_zh: str | None = Field(default=None, description="The question in Chinese")
    description_en: str | None = Field(default=None, description="The question in English")
    datatype_description_zh: str | None = None
    datatype_description_en: str | None = None
    values: tuple[AnswerValue, ...] = ()


@register
class ServiceDefined(EventPayload):
    """A service of the catalogue was created or changed (the whole definition, last one wins)."""

    event_type = "civicgrid.catalogue.service_defined"
    #: 2: the questions residents answer (``attributes``), each in Chinese and English
    schema_version = 2

    service_code: str
    name_zh: str
    name_en: str
    group: str
    handled_by: tuple[Handler, ...]
    departments: tuple[str, ...] = ()
    needs_volunteer: bool = False
    required_qualifications: tuple[str, ...] = ()
    visit_hours: float | None = Field(default=None, description="Typical length of a volunteer visit")
    time_limits: TimeLimits
    attributes: tuple[ServiceQuestion, ...] | None = Field(
        default=None, description="The questions residents answer, in both languages; None on an event of version 1, "
        "which did not carry them (not: a service without questions)")
    active: bool = True
    revision: int = Field(ge=1, description="Monotonic per service; readers keep the highest")
    changed_at: datetime


@upcaster(ServiceDefined.event_type, 1)
def _service_defined_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 did not carry the service's questions: unknown, not none."""
    return {**data, "attributes": None}
