"""What matching keeps of intake's service catalogue: which qualifications a service needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from civicgrid_contracts.events import catalogue as cat_ev


@dataclass
class ServiceInfo:
    code: str
    revision: int
    required_qualifications: list[str] = field(default_factory=list)
    visit_hours: float | None = None
    needs_volunteer: bool = False
    active: bool = True
    name_en: str | None = None
    name_zh: str | None = None

    @classmethod
    def defined(cls, p: cat_ev.ServiceDefined) -> ServiceInfo:
        return cls(p.service_code, p.revision, list(p.required_qualifications), p.visit_hours, p.needs_volunteer,
                   p.active, p.name_en, p.name_zh)
