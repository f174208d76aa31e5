"""The service catalogue editor: a service's form (names, handlers, departments, time limits and its
Open311 attributes) turned into intake's ``PUT /api/v1/services/{code}`` body, and intake's
refusals placed next to the fields that produced them.

intake's ``ServiceSpec`` is the whole service: the body starts from the service as it is, and the
form replaces what it shows, so fields the page does not edit (keywords, description,
qualifications...) go back unchanged. An attribute's answer values are typed one per line,
``key = name``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from civicgrid_console.domain import i18n
from civicgrid_console.domain.forms import FormInvalid

#: fields of intake's ServiceSpec (a PUT sends the whole spec back)
SPEC_FIELDS = ("name_zh", "name_en", "group", "keywords", "description", "handled_by", "departments",
               "needs_volunteer", "required_qualifications", "visit_hours", "time_limits", "attributes", "type")
HANDLERS = ("grid", "department", "property", "volunteer")
CLOCKS = ("business", "calendar")
#: Open311's attribute datatypes (the list ones take answer values)
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
LIST_TYPES = ("singlevaluelist", "multivaluelist")
#: an attribute's fields, as its form rows name them
ATTRIBUTE_FIELDS = ("code", "datatype", "description", "required", "variable", "order", "values",
                    "datatype_description")
#: intake takes at most 30 attributes a service
MAX_ATTRIBUTES = 30
#: what a time limit's body path names on the form
LIMIT_FIELDS = ("response_hours", "resolution_hours", "report_back_hours", "calendar")


@dataclass
class AttributeRow:
    """One attribute's fields, as typed."""

    code: str = ""
    datatype: str = "string"
    description: str = ""
    required: bool = False
    variable: bool = True
    order: str = ""
    values: str = ""  # "key = name" lines
    datatype_description: str = ""
    remove: bool = False

    @property
    def blank(self) -> bool:
        return not (self.code or self.description or self.values.strip())


@dataclass
class ServiceForm:
    name_zh: str = ""
    name_en: str = ""
    group: str = ""
    handled_by: list[str] = field(default_factory=list)
    departments: list[str] = field(default_factory=list)
    response_hours: str = ""
    resolution_hours: str = ""
    report_back_hours: str = ""
    calendar: str = "business"
    attributes: list[AttributeRow] = field(default_factory=list)

    def attribute_rows(self) -> list[AttributeRow]:
        """The rows the page shows: those in use and one blank for a new attribute."""
        used = [a for a in self.attributes if not a.blank]
        return used + ([AttributeRow(order=str(len(used) + 1))] if len(used) < MAX_ATTRIBUTES else [])


def _number(value: Any) -> str:
    if value is None:
        return ""
    f = float(value)
    return str(int(f)) if f.is_integer() else str(f)


def values_text(values: list[Mapping[str, Any]]) -> str:
    return "\n".join(f"{v['key']} = {v['name']}" for v in values)


def form_of(service: Mapping[str, Any]) -> ServiceForm:
    """The editor filled with a service as intake returns it."""
    limits = service.get("time_limits") or {}
    attributes = [AttributeRow(code=a["code"], datatype=a.get("datatype") or "string",
                               description=a.get("description") or "", required=bool(a.get("required")),
                               variable=a.get("variable", True) is not False, order=str(a.get("order", 1)),
                               values=values_text(a.get("values") or []),
                               datatype_description=a.get("datatype_description") or "")
                  for a in sorted(service.get("attributes") or [], key=lambda a: a.get("order", 1))]
    return ServiceForm(name_zh=service.get("name_zh") or "", name_en=service.get("name_en") or "",
                       group=service.get("group") or "", handled_by=list(service.get("handled_by") or []),
                       departments=list(service.get("departments") or []),
                       response_hours=_number(limits.get("response_hours")),
                       resolution_hours=_number(limits.get("resolution_hours")),
                       report_back_hours=_number(limits.get("report_back_hours")),
                       calendar=limits.get("calendar") or "business", attributes=attributes)


def posted(form) -> ServiceForm:
    """The editor as posted (nothing checked yet)."""

    def text(name: str) -> str:
        return str(form.get(name) or "").strip()

    pattern = re.compile(r"^attr-(\d{1,2})-code$")
    rows = sorted({int(m.group(1)) for k in form.keys() if (m := pattern.match(k))})[:MAX_ATTRIBUTES + 1]
    attributes = [AttributeRow(code=text(f"attr-{i}-code"), datatype=text(f"attr-{i}-datatype") or "string",
                               description=text(f"attr-{i}-description"), required=bool(form.get(f"attr-{i}-required")),
                               variable=bool(form.get(f"attr-{i}-variable")), order=text(f"attr-{i}-order"),
                               values=str(form.get(f"attr-{i}-values") or "").strip(),
                               datatype_description=text(f"attr-{i}-datatype_description"),
                               remove=bool(form.get(f"attr-{i}-remove")))
                  for i in rows]
    return ServiceForm(name_zh=text("name_zh"), name_en=text("name_en"), group=text("group"),
                       handled_by=[h for h in form.getlist("handled_by") if h in HANDLERS],
                       departments=[str(d) for d in form.getlist("departments") if str(d).strip()],
                       response_hours=text("response_hours"), resolution_hours=text("resolution_hours"),
                       report_back_hours=text("report_back_hours"), calendar=text("calendar") or "business",
                       attributes=[a for a in attributes if not a.blank])


# ----------------------------------------------------------------------------- form -> API body


@dataclass
class Body:
    json: dict[str, Any]
    origin: list[int]  # the form row of each attribute of the body

    def field_of(self, path: str) -> str | None:
        """The form field id an API error about body ``path`` belongs next to (None: on top)."""
        parts = path.split("/")
        head = parts[0]
        if head in ("name_zh", "name_en", "group", "handled_by", "departments"):
            return head
        if head == "time_limits":
            return parts[1] if len(parts) > 1 and parts[1] in LIMIT_FIELDS else "time_limits"
        if head == "attributes":
            if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(self.origin):
                row = f"attr-{self.origin[int(parts[1])]}"
                return f"{row}-{parts[2]}" if len(parts) > 2 and parts[2] in ATTRIBUTE_FIELDS else row
            return "attributes"
        return None


def _hours(value: str, field_id: str, problems: list[tuple[str, str]], *, optional: bool = False) -> float | None:
    if not value and optional:
        return None
    try:
        return float(value)
    except ValueError:
        problems.append((field_id, "fielderr.number"))
        return None


def parse_values(text: str) -> list[dict[str, str]]:
    """``key = name`` lines (a line without '=' is its own key and name); blank lines skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, name = line.partition("=")
        key, name = key.strip(), name.strip()
        if not key:
            raise ValueError(line)
        out.append({"key": key, "name": name if sep and name else key})
    return out


def _attribute(i: int, a: AttributeRow, problems: list[tuple[str, str]]) -> dict[str, Any]:
    row = f"attr-{i}"
    body: dict[str, Any] = {"code": a.code, "datatype": a.datatype, "description": a.description,
                            "required": a.required, "variable": a.variable,
                            "datatype_description": a.datatype_description or None}
    try:
        body["order"] = int(a.order) if a.order else i + 1
    except ValueError:
        problems.append((f"{row}-order", "fielderr.whole_number"))
    try:
        values = parse_values(a.values)
    except ValueError:
        problems.append((f"{row}-values", "attr.bad_value_line"))
        values = []
    if values and a.datatype not in LIST_TYPES:
        problems.append((f"{row}-values", "attr.values_only_for_lists"))
    body["values"] = values
    return body


def body_of(current: Mapping[str, Any], sf: ServiceForm) -> Body:
    """The service's whole spec with the form's fields in place. The console checks only what it
    must to build the body (numbers it cannot read, answer values on a type without any); intake
    checks the rest and its refusals come back to be placed on their fields."""
    problems: list[tuple[str, str]] = []
    spec = {k: current[k] for k in SPEC_FIELDS if k in current}
    spec.update(name_zh=sf.name_zh, name_en=sf.name_en, group=sf.group, handled_by=list(sf.handled_by),
                departments=list(sf.departments))
    limits = dict(spec.get("time_limits") or {})
    limits.update(response_hours=_hours(sf.response_hours, "response_hours", problems),
                  resolution_hours=_hours(sf.resolution_hours, "resolution_hours", problems),
                  report_back_hours=_hours(sf.report_back_hours, "report_back_hours", problems, optional=True),
                  calendar=sf.calendar)
    spec["time_limits"] = limits
    attributes, origin = [], []
    for i, a in enumerate(sf.attributes):
        if a.remove or a.blank:
            continue
        attributes.append(_attribute(i, a, problems))
        origin.append(i)
    spec["attributes"] = attributes
    if problems:
        raise FormInvalid(problems)
    return Body(json=spec, origin=origin)


# ----------------------------------------------------------------------------- the error summary's links

FIELD_LABELS = {"name_zh": "admin.name_zh", "name_en": "admin.name_en", "group": "admin.group",
                "handled_by": "admin.handled_by", "departments": "cat.departments",
                "response_hours": "admin.response_hours", "resolution_hours": "admin.resolution_hours",
                "report_back_hours": "cat.report_back_hours", "calendar": "admin.calendar",
                "time_limits": "admin.calendar", "attributes": "attr.title"}
ATTRIBUTE_LABELS = {"code": "attr.code", "datatype": "attr.datatype", "description": "attr.description",
                    "required": "attr.required", "order": "attr.order", "values": "attr.values"}


def field_names(lang: str, field_ids) -> dict[str, str]:
    """What the summary on top of a refused form calls each field with an error (its link goes to
    the element of that id)."""
    out = {}
    for fid in field_ids:
        if fid in FIELD_LABELS:
            out[fid] = i18n.t(lang, FIELD_LABELS[fid])
            continue
        m = re.fullmatch(r"attr-(\d+)(?:-(\w+))?", fid)
        if m:
            question = i18n.t(lang, "attr.question", n=int(m.group(1)) + 1)
            part = ATTRIBUTE_LABELS.get(m.group(2) or "")
            out[fid] = f"{question} · {i18n.t(lang, part)}" if part else question
    return out
