"""The FastAPI application of audit."""

from __future__ import annotations

from fastapi import FastAPI

from civicgrid_audit.bootstrap import bootstrap
from civicgrid_audit.entrypoints.http import KPI_DOC, router
from civicgrid_audit.settings import AuditSettings
from civicgrid_runtime import create_app


def build_app(settings: AuditSettings | None = None) -> FastAPI:
    s = settings or AuditSettings()

    async def factory():
        return await bootstrap(s)

    app = create_app(title="civicgrid audit", version="0.1.0", settings=s, runtime_factory=factory,
                     description="Supervision: timelines, time limits and escalation, KPIs, quarterly evaluation "
                                 "and the tamper-evident audit trail.\n\n" + KPI_DOC)
    app.include_router(router)
    return app
