"""What a resident typed into the report form, turned into intake's submission body, and the
service's attribute questions turned into form fields, worded in the visitor's language."""

from __future__ import annotations

from typing import Any


class FormInvalid(Exception):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors  # (field, message key)


def submission(service: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
    """intake's ``RequestCreate`` from the form: a pin (lat, lon) or a building id or an address,
    the attribute answers by code, an optional contact. Intake checks the values; this only
    shapes them and refuses a report with no place at all."""
    location: dict[str, Any] = {}
    lat, lon = (form.get("lat") or "").strip(), (form.get("lon") or "").strip()
    if lat and lon:
        try:
            location["lat"], location["lon"] = float(lat), float(lon)
        except ValueError:
            raise FormInvalid([("location", "report.need_place")]) from None
    for name, key in (("building", "building_id"), ("address", "address_text")):
        if (form.get(name) or "").strip():
            location[key] = form[name].strip()
    if not location:
        raise FormInvalid([("location", "report.need_place")])
    answers: dict[str, Any] = {}
    for a in service.get("attributes") or []:
        name = f"attr_{a['code']}"
        if a.get("datatype") == "multivaluelist":
            values = form.getlist(name) if hasattr(form, "getlist") else form.get(name) or []
            if values:
                answers[a["code"]] = list(values)
        elif (form.get(name) or "").strip():
            answers[a["code"]] = form[name].strip()
    body: dict[str, Any] = {"service_code": service["code"], "location": location,
                            "description": (form.get("description") or "").strip(), "attributes": answers,
                            "channel": "web"}
    contact = {k: form[k].strip() for k in ("name", "phone", "email") if (form.get(k) or "").strip()}
    if contact:
        body["contact"] = contact
    return body


def in_language(item: dict[str, Any], field: str, lang: str) -> str:
    """``field_zh`` or ``field_en`` of a catalogue item in the visitor's language; the other
    language's text when intake holds the item in that one only (a question written before both
    were asked for)."""
    other = "en" if lang == "zh" else "zh"
    return str(item.get(f"{field}_{lang}") or item.get(f"{field}_{other}") or "")


def questions(service: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    """The service's attribute questions as the report form asks them, in order, each worded in
    ``lang`` (with its answer values' names): {code, datatype, required, label, hint, values}."""
    return [{"code": a["code"], "datatype": a.get("datatype") or "string", "required": bool(a.get("required")),
             "label": in_language(a, "description", lang), "hint": in_language(a, "datatype_description", lang),
             "values": [{"key": v["key"], "name": in_language(v, "name", lang)} for v in a.get("values") or []]}
            for a in sorted(service.get("attributes") or [], key=lambda a: a.get("order", 1))]
