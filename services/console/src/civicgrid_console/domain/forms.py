"""What a resident typed into the report form, turned into intake's submission body, and the
service's attribute questions turned into form fields."""

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
