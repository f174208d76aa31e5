"""The service catalogue (服務清單): service definitions, Open311 attributes and answer validation.

Pure: no I/O. ``ServiceDef`` is the stored and API shape of one service; ``validate_answers``
checks a resident's answers against the service's attribute definitions and returns them
normalised (numbers as numbers, lists as lists) or raises ``AnswerErrors`` naming each field.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from civicgrid_contracts.values import Handler, TimeLimits

Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
CODE_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def written_in(text: str) -> Language:
    """The language a catalogue text is written in: Chinese when it has a Han character, else English
    (what a text of the one-language catalogue is taken to be)."""
    return "zh" if _HAN.search(text) else "en"


def in_language(texts: dict[str, str | None], lang: str) -> str:
    """The text in ``lang`` ('zh' or 'en'), else in the other language (a question the catalogue holds
    in one language only); '' when there is none."""
    first = "zh" if lang.startswith("zh") else "en"
    return texts.get(first) or texts.get("en" if first == "zh" else "zh") or ""


class AttributeValue(BaseModel):
    """One answer a list question offers, named in Chinese and in English."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=100)
    name_zh: str = Field(min_length=1, max_length=200, description="The answer's name in Chinese")
    name_en: str = Field(min_length=1, max_length=200, description="The answer's name in English")

    def name(self, lang: str) -> str:
        return in_language({"zh": self.name_zh, "en": self.name_en}, lang)


class Attribute(BaseModel):
    """An Open311 attribute: one extra question a service asks, in Chinese and in English (an
    administrator writes both; Open311's single ``description`` is chosen by the client's language)."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    datatype: Datatype
    description_zh: str = Field(min_length=1, max_length=500, description="The question in Chinese")
    description_en: str = Field(min_length=1, max_length=500, description="The question in English")
    required: bool = False
    variable: bool = True
    datatype_description_zh: str | None = Field(default=None, max_length=500,
                                                description="How to answer, in Chinese")
    datatype_description_en: str | None = Field(default=None, max_length=500,
                                                description="How to answer, in English")
    order: int = 1
    values: list[AttributeValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_for_lists(self) -> Attribute:
        if self.datatype in ("singlevaluelist", "multivaluelist") and not self.values:
            raise ValueError(f"attribute {self.code}: a {self.datatype} needs values")
        return self

    def question(self, lang: str) -> str:
        return in_language({"zh": self.description_zh, "en": self.description_en}, lang)

    def answer_hint(self, lang: str) -> str:
        return in_language({"zh": self.datatype_description_zh, "en": self.datatype_description_en}, lang)


class HeldValue(AttributeValue):
    """An answer as the catalogue holds it: written before both languages were asked for (documents
    of ``schema_version`` 1), it has one name only."""

    name_zh: str | None = Field(default=None, max_length=200)  # type: ignore[assignment]
    name_en: str | None = Field(default=None, max_length=200)  # type: ignore[assignment]


class HeldAttribute(Attribute):
    """A question as the catalogue holds it: one written before both languages were asked for has
    one of its texts only, until an administrator gives the other (a save needs both)."""

    description_zh: str | None = Field(default=None, max_length=500)  # type: ignore[assignment]
    description_en: str | None = Field(default=None, max_length=500)  # type: ignore[assignment]
    values: list[HeldValue] = Field(default_factory=list)  # type: ignore[assignment]


class ServiceSpec(BaseModel):
    """What an administrator defines (create/update body)."""

    model_config = ConfigDict(extra="forbid")
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    group: str = Field(min_length=1, max_length=100)
    keywords: list[str] = Field(default_factory=list, max_length=30)
    description: str = Field(default="", max_length=2000)
    handled_by: list[Handler] = Field(min_length=1)
    departments: list[str] = Field(default_factory=list)
    needs_volunteer: bool = False
    required_qualifications: list[str] = Field(default_factory=list)
    visit_hours: float | None = Field(default=None, gt=0, le=24)
    time_limits: TimeLimits
    attributes: list[Attribute] = Field(default_factory=list, max_length=30)
    type: Literal["realtime", "batch", "blackbox"] = "realtime"

    @field_validator("attributes")
    @classmethod
    def _unique_codes(cls, v: list[Attribute]) -> list[Attribute]:
        codes = [a.code for a in v]
        if len(codes) != len(set(codes)):
            raise ValueError("attribute codes must be unique")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        if "department" in self.handled_by and not self.departments:
            raise ValueError("a service handled by a department must name the departments to whistle")
        if "volunteer" in self.handled_by:
            object.__setattr__(self, "needs_volunteer", True)
        return self


class ServiceDef(ServiceSpec):
    """A service as the catalogue holds it (the spec an administrator saved, or an older one)."""

    code: str = Field(pattern=CODE_PATTERN)
    attributes: list[HeldAttribute] = Field(default_factory=list, max_length=30)  # type: ignore[assignment]
    active: bool = True
    revision: int = 1
    changed_at: datetime | None = None

    @property
    def metadata(self) -> bool:
        return bool(self.attributes)


# ----------------------------------------------------------------------------- the shipped texts


def _completed(held: dict[str, Any], shipped: dict[str, Any], field: str) -> bool:
    """Fill ``held``'s missing ``field_zh`` / ``field_en`` from ``shipped`` where its other text is
    still the shipped one; True when something was filled."""
    filled = False
    for lang, other in (("zh", "en"), ("en", "zh")):
        mine, theirs = f"{field}_{lang}", f"{field}_{other}"
        if not held.get(mine) and shipped.get(mine) and held.get(theirs) == shipped.get(theirs):
            held[mine] = shipped[mine]
            filled = True
    return filled


def with_shipped_texts(held: ServiceDef, shipped: ServiceDef) -> ServiceDef | None:
    """``held`` with the texts its questions lack (a catalogue stored when questions had one
    language) taken from the shipped version of the service, where the text it has is still the
    shipped one: an administrator's own wording is never touched. None: nothing to complete."""
    questions = [a.model_dump() for a in held.attributes]
    shipped_questions = {a.code: a.model_dump() for a in shipped.attributes}
    filled = False
    for q in questions:
        s = shipped_questions.get(q["code"])
        if s is None:
            continue
        filled |= _completed(q, s, "description")
        shipped_values = {v["key"]: v for v in s["values"]}
        for v in q["values"]:
            if v["key"] in shipped_values:
                filled |= _completed(v, shipped_values[v["key"]], "name")
    return held.model_copy(update={"attributes": [HeldAttribute(**q) for q in questions]}) if filled else None


# ----------------------------------------------------------------------------- answers


class AnswerErrors(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def _err(code: str, message: str) -> dict[str, str]:
    return {"field": f"attributes/{code}", "message": message, "type": "attribute"}


def validate_answers(service: ServiceDef, answers: dict[str, Any] | None) -> dict[str, Any]:
    """Check answers against the service's attributes; return them normalised."""
    answers = dict(answers or {})
    defs = {a.code: a for a in service.attributes}
    errors: list[dict[str, str]] = []
    out: dict[str, Any] = {}
    for code in answers:
        if code not in defs:
            errors.append(_err(code, f"service {service.code!r} has no attribute {code!r}"))
    for code, a in defs.items():
        raw = answers.get(code)
        if raw is None or raw == "" or raw == []:
            if a.required:
                errors.append(_err(code, "required"))
            continue
        try:
            out[code] = _coerce(a, raw)
        except ValueError as exc:
            errors.append(_err(code, str(exc)))
    if errors:
        raise AnswerErrors(errors)
    return out


def _coerce(a: Attribute, raw: Any) -> Any:
    keys = {v.key for v in a.values}
    if a.datatype == "number":
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        try:
            n = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {raw!r}") from None
        if n != n or n in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        return int(n) if n.is_integer() else n
    if a.datatype == "datetime":
        if not isinstance(raw, str):
            raise ValueError("expected an ISO 8601 date-time")
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).isoformat()
        except ValueError:
            raise ValueError(f"expected an ISO 8601 date-time, got {raw!r}") from None
    if a.datatype in ("string", "text"):
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise ValueError("expected text")
        s = str(raw)
        limit = 255 if a.datatype == "string" else 4000
        if len(s) > limit:
            raise ValueError(f"at most {limit} characters")
        return s
    if a.datatype == "singlevaluelist":
        if isinstance(raw, list):
            if len(raw) != 1:
                raise ValueError("exactly one value expected")
            raw = raw[0]
        if str(raw) not in keys:
            raise ValueError(f"{raw!r} is not one of {sorted(keys)}")
        return str(raw)
    # multivaluelist
    items = raw if isinstance(raw, list) else [raw]
    bad = [str(x) for x in items if str(x) not in keys]
    if bad:
        raise ValueError(f"{bad} not among {sorted(keys)}")
    return sorted({str(x) for x in items})


# ----------------------------------------------------------------------------- defaults


def _tl(resp: float, res: float, cal: str = "business", report: float | None = None) -> TimeLimits:
    return TimeLimits(response_hours=resp, resolution_hours=res, calendar=cal, report_back_hours=report)


def _vals(*answers: tuple[str, str, str]) -> list[HeldValue]:
    """(key, Chinese name, English name) of each answer."""
    return [HeldValue(key=k, name_zh=zh, name_en=en) for k, zh, en in answers]


def _ask(code: str, datatype: Datatype, zh: str, en: str, **more: Any) -> HeldAttribute:
    return HeldAttribute(code=code, datatype=datatype, description_zh=zh, description_en=en, **more)


DEFAULT_CATALOGUE: list[ServiceDef] = [
    ServiceDef(
        code="property_complaint", name_zh="物業管理投訴", name_en="Property management complaint", group="property",
        keywords=["物業", "property", "maintenance", "fees", "lift"], handled_by=["property"],
        departments=["property_office"], time_limits=_tl(4, 72, report=48),
        description="Complaints about a property company's service, maintenance or fees; routed to the property "
        "management office (物業管理辦公室).",
        attributes=[_ask("issue", "singlevaluelist", "出現了什麼問題？", "What is the problem?", required=True,
                         values=_vals(("maintenance", "報修未處理", "Repairs not done"),
                                      ("lift", "電梯故障", "Lift out of order"), ("fees", "收費", "Fees"),
                                      ("security", "安保 / 門禁", "Security / access"), ("other", "其他", "Other")))],
    ),
    ServiceDef(
        code="sanitation", name_zh="環境衛生", name_en="Environment and sanitation", group="environment",
        keywords=["垃圾", "garbage", "litter", "cleaning"], handled_by=["grid"], time_limits=_tl(2, 24),
        description="Uncollected garbage, litter, dirty stairwells and public spaces.",
        attributes=[_ask("waste_type", "singlevaluelist", "是什麼垃圾？", "What kind of waste?", required=True,
                         values=_vals(("household", "生活垃圾", "Household waste"),
                                      ("construction", "建築垃圾", "Construction debris"),
                                      ("bulky", "大件垃圾", "Bulky items"), ("other", "其他", "Other")))],
    ),
    ServiceDef(
        code="public_order", name_zh="治安秩序", name_en="Public order and safety", group="public_order",
        keywords=["治安", "safety", "noise", "disturbance"], handled_by=["grid", "department"],
        departments=["public_security"], time_limits=_tl(1, 24, "calendar", report=24),
        description="Disturbances, safety hazards and public order matters needing the police (公安).",
    ),
    ServiceDef(
        code="illegal_construction", name_zh="違法建設", name_en="Illegal construction", group="enforcement",
        keywords=["違建", "違法建設", "illegal building", "extension"], handled_by=["department"],
        departments=["chengguan", "housing"], time_limits=_tl(4, 120, report=72),
        description="Unauthorised building work; the street whistles urban management (城管) and housing.",
        attributes=[_ask("ongoing", "singlevaluelist", "施工是否仍在進行？", "Is the work still going on?", required=True,
                         values=_vals(("yes", "是", "Yes"), ("no", "否，已完工", "No, finished")))],
    ),
    ServiceDef(
        code="street_vending", name_zh="占道經營", name_en="Street vending and road occupation", group="enforcement",
        keywords=["攤販", "vendor", "occupation"], handled_by=["department"], departments=["chengguan"],
        time_limits=_tl(2, 48, report=24), description="Unlicensed stalls occupying roads and pavements.",
    ),
    ServiceDef(
        code="food_safety", name_zh="食品安全", name_en="Food safety and market order", group="enforcement",
        keywords=["食品", "food", "shop", "price"], handled_by=["department"], departments=["market_supervision"],
        time_limits=_tl(2, 72, report=48), description="Food safety, unlicensed shops, prices (市場監管).",
    ),
    ServiceDef(
        code="public_facility", name_zh="公共設施維修", name_en="Public facility repair", group="facilities",
        keywords=["路燈", "streetlight", "bench", "manhole", "road"], handled_by=["grid"], time_limits=_tl(4, 72),
        description="Broken street lights, benches, manhole covers, paths and other public facilities.",
        attributes=[_ask("facility", "singlevaluelist", "哪一項設施？", "Which facility?", required=True,
                         values=_vals(("streetlight", "路燈", "Street light"), ("manhole", "井蓋", "Manhole cover"),
                                      ("road", "道路或小徑", "Road or path"), ("bench", "長椅", "Bench"),
                                      ("other", "其他", "Other"))),
                    _ask("hazard", "singlevaluelist", "是否危及行人？", "Is it a danger to people?", order=2,
                         values=_vals(("yes", "是", "Yes"), ("no", "否", "No")))],
    ),
    ServiceDef(
        code="floating_population", name_zh="流動人口登記", name_en="Floating population registration",
        group="registration", keywords=["登記", "registration", "tenant"], handled_by=["grid"],
        time_limits=_tl(8, 72), description="Registering residents who moved in (tenants, workers).",
        attributes=[_ask("arrival_date", "datetime", "到達日期", "Date of arrival", required=True),
                    _ask("persons", "number", "人數", "Number of persons", required=True, order=2)],
    ),
    ServiceDef(
        code="neighbour_dispute", name_zh="鄰里糾紛", name_en="Neighbour dispute mediation", group="community",
        keywords=["糾紛", "dispute", "mediation", "neighbour"], handled_by=["grid"], time_limits=_tl(8, 120),
        description="Mediation of disputes between neighbours (noise, leaks, shared space).",
    ),
    ServiceDef(
        code="elderly_home_care", name_zh="居家養老", name_en="Home elderly care", group="care",
        keywords=["養老", "elderly", "visit", "care"], handled_by=["grid", "volunteer"], needs_volunteer=True,
        required_qualifications=["elderly_care"], visit_hours=2, time_limits=_tl(8, 72),
        description="Visits, company, shopping and light help at home for elderly residents (家服務).",
        attributes=[_ask("care_type", "multivaluelist", "需要哪些幫助？", "What help is needed?", required=True,
                         values=_vals(("company", "陪伴聊天", "Company / chat"), ("shopping", "代購", "Shopping"),
                                      ("cleaning", "簡單清潔", "Light cleaning"),
                                      ("medical", "陪同就醫", "Medical escort"))),
                    _ask("resident_age", "number", "受照顧老人的年齡", "Age of the person cared for", order=2)],
    ),
    ServiceDef(
        code="after_school_care", name_zh="四點半課堂", name_en="After-school care", group="care",
        keywords=["四點半課堂", "children", "homework", "after school"], handled_by=["grid", "volunteer"],
        needs_volunteer=True, required_qualifications=["tutoring"], visit_hours=2, time_limits=_tl(8, 120),
        description="Supervision and homework help for schoolchildren after 4:30 pm.",
        attributes=[_ask("children", "number", "兒童人數", "Number of children", required=True),
                    _ask("grade", "string", "就讀年級", "School grade(s)", order=2)],
    ),
    ServiceDef(
        code="disability_assistance", name_zh="助殘服務", name_en="Disability assistance", group="care",
        keywords=["助殘", "disability", "wheelchair"], handled_by=["grid", "volunteer"], needs_volunteer=True,
        required_qualifications=["disability_assistance"], visit_hours=2, time_limits=_tl(8, 72),
        description="Help at home and escorts for residents with disabilities.",
    ),
    ServiceDef(
        code="water_heating", name_zh="供水供暖", name_en="Water supply and heating", group="utilities",
        keywords=["停水", "暖氣", "water", "heating"], handled_by=["grid", "department"], departments=["housing"],
        time_limits=_tl(2, 48, "calendar", report=24), description="Outages and faults of water supply or heating.",
    ),
    ServiceDef(
        code="greening", name_zh="綠化養護", name_en="Greening and trees", group="environment",
        keywords=["樹", "tree", "grass", "park"], handled_by=["grid"], time_limits=_tl(8, 120),
        description="Fallen or dangerous trees, neglected green spaces.",
    ),
    ServiceDef(
        code="parking", name_zh="停車秩序", name_en="Parking order", group="public_order",
        keywords=["停車", "parking", "fire lane"], handled_by=["grid", "department"], departments=["chengguan"],
        time_limits=_tl(2, 48, report=24), description="Cars blocking fire lanes, exits and pavements.",
    ),
    ServiceDef(
        code="other", name_zh="其他訴求", name_en="Other request", group="general", keywords=["其他", "other"],
        handled_by=["grid"], time_limits=_tl(8, 120), description="Anything not covered above; staff will route it.",
    ),
]
