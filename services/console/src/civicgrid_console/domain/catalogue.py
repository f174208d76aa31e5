"""The service catalogue editor: a service's form (names, handlers, departments, time limits and its
Open311 attributes, each question in Chinese and English) turned into intake's
``PUT /api/v1/services/{code}`` body, and intake's refusals placed next to the fields that produced
them.

intake's ``ServiceSpec`` is the whole service: the body starts from the service as it is, and the
form replaces what it shows, so fields the page does not edit (keywords, description,
qualifications...) go back unchanged. An attribute's answer values are typed one per line,
``key = 中文名称 | English name``. The form carries the revision it was loaded at: intake refuses
the save (412) when someone else saved the service since, and the page shows how the current
version differs from what was typed (``differences``).
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
#: (those the form carries unseen -- variable, datatype_description_zh/en -- are shown on the attribute)
ATTRIBUTE_FIELDS = ("code", "datatype", "description_zh", "description_en", "required", "order", "values")
#: intake takes at most 30 attributes a service
MAX_ATTRIBUTES = 30
#: what a time limit's body path names on the form
LIMIT_FIELDS = ("response_hours", "resolution_hours", "report_back_hours", "calendar")


@dataclass
class AttributeRow:
    """One attribute's fields, as typed."""

    code: str = ""
    datatype: str = "string"
    description_zh: str = ""
    description_en: str = ""
    required: bool = False
    variable: bool = True
    order: str = ""
    values: str = ""  # "key = 中文 | English" lines
    datatype_description_zh: str = ""
    datatype_description_en: str = ""
    remove: bool = False

    @property
    def blank(self) -> bool:
        return not (self.code or self.description_zh or self.description_en or self.values.strip())


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
    revision: str = ""  # the service's revision the form was loaded at (sent back as If-Match)

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
    """Answer values as the form shows them: ``key = 中文 | English``, a line each (a name intake
    holds in one language only leaves the other side empty, to be filled in)."""
    return "\n".join(f"{v['key']} = {v.get('name_zh') or ''} | {v.get('name_en') or ''}" for v in values)


def form_of(service: Mapping[str, Any]) -> ServiceForm:
    """The editor filled with a service as intake returns it."""
    limits = service.get("time_limits") or {}
    attributes = [AttributeRow(code=a["code"], datatype=a.get("datatype") or "string",
                               description_zh=a.get("description_zh") or "",
                               description_en=a.get("description_en") or "", required=bool(a.get("required")),
                               variable=a.get("variable", True) is not False, order=str(a.get("order", 1)),
                               values=values_text(a.get("values") or []),
                               datatype_description_zh=a.get("datatype_description_zh") or "",
                               datatype_description_en=a.get("datatype_description_en") or "")
                  for a in sorted(service.get("attributes") or [], key=lambda a: a.get("order", 1))]
    return ServiceForm(name_zh=service.get("name_zh") or "", name_en=service.get("name_en") or "",
                       group=service.get("group") or "", handled_by=list(service.get("handled_by") or []),
                       departments=list(service.get("departments") or []),
                       response_hours=_number(limits.get("response_hours")),
                       resolution_hours=_number(limits.get("resolution_hours")),
                       report_back_hours=_number(limits.get("report_back_hours")),
                       calendar=limits.get("calendar") or "business", attributes=attributes,
                       revision=str(service.get("revision") or ""))


def posted(form) -> ServiceForm:
    """The editor as posted (nothing checked yet)."""

    def text(name: str) -> str:
        return str(form.get(name) or "").strip()

    pattern = re.compile(r"^attr-(\d{1,2})-code$")
    rows = sorted({int(m.group(1)) for k in form.keys() if (m := pattern.match(k))})[:MAX_ATTRIBUTES + 1]
    attributes = [AttributeRow(code=text(f"attr-{i}-code"), datatype=text(f"attr-{i}-datatype") or "string",
                               description_zh=text(f"attr-{i}-description_zh"),
                               description_en=text(f"attr-{i}-description_en"),
                               required=bool(form.get(f"attr-{i}-required")),
                               variable=bool(form.get(f"attr-{i}-variable")), order=text(f"attr-{i}-order"),
                               values=str(form.get(f"attr-{i}-values") or "").strip(),
                               datatype_description_zh=text(f"attr-{i}-datatype_description_zh"),
                               datatype_description_en=text(f"attr-{i}-datatype_description_en"),
                               remove=bool(form.get(f"attr-{i}-remove")))
                  for i in rows]
    return ServiceForm(name_zh=text("name_zh"), name_en=text("name_en"), group=text("group"),
                       handled_by=[h for h in form.getlist("handled_by") if h in HANDLERS],
                       departments=[str(d) for d in form.getlist("departments") if str(d).strip()],
                       response_hours=text("response_hours"), resolution_hours=text("resolution_hours"),
                       report_back_hours=text("report_back_hours"), calendar=text("calendar") or "business",
                       attributes=[a for a in attributes if not a.blank], revision=text("revision"))


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
    """``key = 中文名称 | English name`` lines (blank lines skipped); a line without its key, or
    without either of its names, is refused (ValueError)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _, names = line.partition("=")
        name_zh, _, name_en = names.partition("|")
        key, name_zh, name_en = key.strip(), name_zh.strip(), name_en.strip()
        if not (key and name_zh and name_en):
            raise ValueError(line)
        out.append({"key": key, "name_zh": name_zh, "name_en": name_en})
    return out


def _attribute(i: int, a: AttributeRow, problems: list[tuple[str, str]]) -> dict[str, Any]:
    row = f"attr-{i}"
    body: dict[str, Any] = {"code": a.code, "datatype": a.datatype, "description_zh": a.description_zh,
                            "description_en": a.description_en, "required": a.required, "variable": a.variable,
                            "datatype_description_zh": a.datatype_description_zh or None,
                            "datatype_description_en": a.datatype_description_en or None}
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
ATTRIBUTE_LABELS = {"code": "attr.code", "datatype": "attr.datatype", "description_zh": "attr.description_zh",
                    "description_en": "attr.description_en", "required": "attr.required", "order": "attr.order",
                    "values": "attr.values"}


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


# ----------------------------------------------------------------------------- someone else saved first

#: the editor's fields compared with the current version after a refused save (list ones joined)
TOP_FIELDS = ("name_zh", "name_en", "group", "handled_by", "departments", "response_hours", "resolution_hours",
              "report_back_hours", "calendar")
COMPARED_ATTRIBUTE_FIELDS = ("datatype", "description_zh", "description_en", "values", "required")


def _shown(value: Any) -> str:
    """A field's value as the comparison and the note at the field show it."""
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def differences(current: ServiceForm, typed: ServiceForm) -> tuple[list[tuple[str, str]], list[AttributeRow]]:
    """Where the form as typed differs from the service's current version: (field id, the current
    value) for each field, and the current version's questions the form has not (by code)."""
    fields = [(name, _shown(getattr(current, name))) for name in TOP_FIELDS
              if _shown(getattr(current, name)) != _shown(getattr(typed, name))]
    rows = {a.code: i for i, a in enumerate(typed.attributes) if a.code}
    missing = []
    for a in current.attributes:
        if a.code not in rows:
            missing.append(a)
            continue
        mine = typed.attributes[rows[a.code]]
        fields += [(f"attr-{rows[a.code]}-{name}", _shown(getattr(a, name))) for name in COMPARED_ATTRIBUTE_FIELDS
                   if _comparable(name, getattr(a, name)) != _comparable(name, getattr(mine, name))]
    return fields, missing


def _comparable(name: str, value: Any) -> Any:
    """Answer values compared as the values they name (spacing aside), anything else as shown."""
    if name == "values":
        try:
            return parse_values(value)
        except ValueError:
            return value.strip()
    return _shown(value).strip()
