"""The composition root: the one place where adapters are built and wired."""

from __future__ import annotations

from dataclasses import dataclass

from civicgrid_audit.adapters.auditlog import AuditLog, Signer
from civicgrid_audit.adapters.documents import DEADLINES
from civicgrid_audit.adapters.projection import Projector, request_collection
from civicgrid_audit.adapters.queries import Queries
from civicgrid_audit.adapters.scanner import DeadlineScanner
from civicgrid_audit.adapters.upgrade import upgrade_requests
from civicgrid_audit.settings import AuditSettings
from civicgrid_contracts import topics
from civicgrid_runtime import Runtime
from civicgrid_runtime.bus import EventConsumer
from civicgrid_runtime.calendar import CalendarSource
from civicgrid_runtime.logging import get_logger

CONSUMED_TOPICS: tuple[str, ...] = tuple(t.name for t in topics.EVENT_TOPICS)
logger = get_logger("civicgrid.audit")


@dataclass
class AuditService:
    runtime: Runtime
    settings: AuditSettings
    calendar: CalendarSource
    log: AuditLog
    projector: Projector
    scanner: DeadlineScanner
    queries: Queries
    consumer: EventConsumer | None = None


async def bootstrap(settings: AuditSettings | None = None, *, runtime: Runtime | None = None,
                    consume: bool = True, scan: bool = True, checkpoints: bool = True,
                    offset_reset: str = "earliest") -> AuditService:
    s = settings or AuditSettings()
    rt = runtime or await Runtime.open(s)
    calendar = rt.follow_calendar()  # escalation steps are set on it; the request's own deadlines come in events
    log = AuditLog(rt.db, Signer(s.signing_key.get_secret_value()))
    projector = Projector(rt.db, log, calendar, repeat_hours=s.repeat_hours)
    await projector.ensure_indexes()
    # requests an older version stored, rewritten in today's shape once: the lists query today's fields only
    rewritten = await upgrade_requests(rt.db)
    if rewritten:
        logger.info("request documents of an older shape rewritten in today's", rewritten=rewritten)
    # escalations go out through their claims (insert_caused); the relay's sweep is for what an older
    # version left in the outbox of a ``deadlines`` document, in a database that has them
    legacy = [rt.db[DEADLINES]] if DEADLINES in await rt.db.list_collection_names() else []
    relay = rt.outbox(legacy)
    scanner = DeadlineScanner(rt.db[request_collection("")], relay, calendar, source=s.source,
                              lease_seconds=s.lease_seconds, instance=s.consumer_instance or None)
    await scanner.ensure_indexes()
    if scan:
        projector.on_deadline = scanner.schedule
    svc = AuditService(rt, s, calendar, log, projector, scanner, Queries(rt.db, calendar))
    if consume:
        # one batch per fetch across every topic and partition: one round trip per step for the whole
        # batch, one write per request for its events of every topic
        svc.consumer = rt.consume(list(CONSUMED_TOPICS), projector.apply, auto_offset_reset=offset_reset,
                                  merge_topics=True)
    if scan:
        rt.every(s.scan_seconds, scanner.scan, name="deadline-scan")
    if checkpoints:
        rt.every(s.checkpoint_seconds, log.checkpoint, name="checkpoint")
    rt.every(s.head_flush_seconds, log.flush_heads, name="log-heads")
    rt.every(s.kpi_flush_seconds, projector.ledger.flush, name="kpi-counting")
    rt.on_stop.append(log.flush_heads)
    rt.on_stop.append(projector.ledger.flush)
    return svc
