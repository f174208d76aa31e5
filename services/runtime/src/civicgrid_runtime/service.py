"""What every service process is made of, built from settings in one place.

A service's ``bootstrap`` calls ``Runtime.open(settings)``, registers its consumers and outbox
collections, and hands the runtime to its FastAPI app (``create_app``), whose lifespan starts and
stops everything in order. Tests build the same ``Runtime`` against the real broker and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_contracts import topics
from civicgrid_runtime.accesslog import AccessLog
from civicgrid_runtime.auth import install_auth
from civicgrid_runtime.bus import BatchHandler, EventConsumer, EventPublisher, ensure_topics
from civicgrid_runtime.calendar import CalendarFollower
from civicgrid_runtime.logging import configure_logging, get_logger
from civicgrid_runtime.metrics import DEPENDENCY_UP
from civicgrid_runtime.problems import install_problem_handlers, problem_responses
from civicgrid_runtime.protection import OversizeResponse, install_docs, install_protection, problem_413
from civicgrid_runtime.settings import ServiceSettings
from civicgrid_runtime.store import OutboxRelay, connect, ping
from civicgrid_runtime.tracing import configure_tracing, instrument_app, shutdown_tracing

#: the collector's thresholds once a service has started. The default (a young collection every
#: 700 allocations) suits small scripts; a service that builds and drops pydantic models, BSON and
#: Kafka records per request ran 4,800 young and 35 full collections in one intake bench (1.9 s of
#: collection); with these, 20-90 young and no full one (0.1-0.2 s), each young one a few ms, and
#: intake's throughput at 64 connections went from about 960 to 1,160-1,300 accepted/s.
GC_THRESHOLDS = (20_000, 20, 100)


def tune_collector() -> None:
    """The collector's thresholds for a long, allocation-heavy run (a service, a replay)."""
    gc.set_threshold(*GC_THRESHOLDS)

log = get_logger("civicgrid.service")


@dataclass
class Runtime:
    settings: ServiceSettings
    publisher: EventPublisher
    client: AsyncMongoClient
    db: AsyncDatabase
    consumers: list[EventConsumer] = field(default_factory=list)
    relay: OutboxRelay | None = None
    background: list[Callable[[], Any]] = field(default_factory=list)
    #: run at stop, after the consumers stopped and before the store closes (e.g. write back caches)
    on_stop: list[Callable[[], Any]] = field(default_factory=list)
    #: the working calendar, for a service that sets deadlines (``follow_calendar``)
    calendar: CalendarFollower | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)
    started: bool = False

    @classmethod
    async def open(cls, settings: ServiceSettings, *, create_topics: bool = True) -> Runtime:
        if create_topics:
            await ensure_topics(settings.kafka_bootstrap_servers, replication_factor=settings.topic_replication_factor)
        publisher = EventPublisher(settings.kafka_bootstrap_servers, client_id=settings.service_name)
        await publisher.start()
        client = connect(settings.mongodb_url, app_name=f"civicgrid-{settings.service_name}")
        return cls(settings=settings, publisher=publisher, client=client, db=client[settings.database_name])

    def consume(self, topic_names: Sequence[str], handler: BatchHandler, *, group_id: str | None = None,
                auto_offset_reset: str = "earliest", merge_partitions: bool = False,
                merge_topics: bool = False) -> EventConsumer:
        s = self.settings
        consumer = EventConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers, group_id=group_id or s.group_id, topic_names=topic_names,
            handler=handler, publisher=self.publisher, max_batch=s.consumer_max_batch,
            max_attempts=s.consumer_max_attempts, backoff_seconds=s.consumer_backoff_seconds,
            commit_interval_seconds=s.consumer_commit_interval_seconds,
            fetch_max_wait_ms=s.consumer_fetch_max_wait_ms, fetch_min_bytes=s.consumer_fetch_min_bytes,
            idle_fetch_max_wait_ms=s.consumer_idle_fetch_max_wait_ms,
            instance_id=s.consumer_instance or None, auto_offset_reset=auto_offset_reset,
            merge_partitions=merge_partitions, merge_topics=merge_topics,
        )
        self.consumers.append(consumer)
        return consumer

    def follow_calendar(self) -> CalendarFollower:
        """Hold the working calendar of the bus (read to its end before the consumers start)."""
        self.calendar = CalendarFollower(self.settings.kafka_bootstrap_servers)
        return self.calendar

    def outbox(self, collections: Sequence[AsyncCollection]) -> OutboxRelay:
        self.relay = OutboxRelay(self.publisher, collections, interval=self.settings.outbox_sweep_seconds)
        return self.relay

    def every(self, seconds: float, job: Callable[[], Any], *, name: str) -> None:
        """Run ``job`` periodically while the service runs (e.g. deadline scans, offer expiry)."""

        async def loop() -> None:
            while True:
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - log and keep the schedule
                    log.warning("periodic job failed", job=name, error=repr(exc))
                await asyncio.sleep(seconds)

        self.background.append(loop)

    async def start(self) -> None:
        if self.calendar:
            await self.calendar.start()
        if self.relay:
            for col in self.relay.collections:
                await OutboxRelay.ensure_indexes(col)
            # publish what a previous crash left behind before taking new work
            await self.relay.sweep_all()
            await self.relay.sweep()
            await self.relay.start()
        groups = {c.group_id for c in self.consumers}
        if groups:  # each group's dead-letter topic (the registry has the four services' own)
            await ensure_topics(self.settings.kafka_bootstrap_servers, [topics.dead_letter(g) for g in groups],
                                replication_factor=self.settings.topic_replication_factor)
        for c in self.consumers:
            await c.start()
        self._tasks = [asyncio.create_task(job()) for job in self.background]
        self.started = True

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for c in self.consumers:
            await c.stop()
        for job in self.on_stop:
            try:
                await job()
            except Exception as exc:  # noqa: BLE001 - the rest of the shutdown must still happen
                log.warning("stop job failed", job=getattr(job, "__qualname__", repr(job)), error=repr(exc))
        if self.relay:
            await self.relay.stop()
        if self.calendar:
            await self.calendar.stop()
        await self.publisher.stop()
        await self.client.close()
        self.started = False

    async def readiness(self) -> dict[str, Any]:
        store_ok = await ping(self.db)
        broker_ok = await self.publisher.ping()
        DEPENDENCY_UP.labels("store").set(int(store_ok))  # what the unreachable-store/broker alerts read
        DEPENDENCY_UP.labels("broker").set(int(broker_ok))
        lag = {}
        for c in self.consumers:
            lag.update({f"{c.group_id}/{t}": n for t, n in c.lag().items()})
        return {"store": store_ok, "broker": broker_ok, "consumer_lag": lag}


def health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    unhealthy = {503: {"description": "Not healthy (the body says what)", "content": {"application/json": {}}}}

    @router.get("/health/live", summary="The process is alive (503: a consumer stopped consuming)",
                responses=unhealthy)
    async def live(request: Request, response: Response) -> dict[str, Any]:
        rt: Runtime | None = getattr(request.app.state, "runtime", None)
        stopped = [c.group_id for c in (rt.consumers if rt else ()) if not c.alive]
        if stopped:
            response.status_code = 503
            return {"status": "consumer stopped", "groups": stopped}
        return {"status": "ok"}

    @router.get("/health/ready", summary="Broker and store reachable", responses=unhealthy)
    async def ready(request: Request, response: Response) -> dict[str, Any]:
        rt: Runtime = request.app.state.runtime
        detail = await rt.readiness()
        ok = detail["store"] and detail["broker"]
        response.status_code = 200 if ok else 503
        return {"status": "ready" if ok else "not ready", **detail}

    @router.get("/calendar", summary="The working calendar this process computes deadlines with")
    async def calendar(request: Request) -> dict[str, Any]:
        rt: Runtime = request.app.state.runtime
        return rt.calendar.describe() if rt.calendar else {"years": {}, "caught_up": False}

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(*, title: str, version: str, description: str, runtime_factory: Callable[[], Any],
               on_started: Callable[[Any], Any] | None = None, settings: ServiceSettings,
               oversize_response: OversizeResponse = problem_413) -> FastAPI:
    """A FastAPI app whose lifespan builds the service (``runtime_factory`` returns an object with
    ``.runtime``), starts its consumers and relay, and stops them on shutdown; it wears the shared
    protection (body cap, CORS, security headers) and serves its docs at ``/docs``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await runtime_factory()
        app.state.service = service
        app.state.runtime = service.runtime
        await service.runtime.start()
        if on_started:
            await on_started(service)
        # what start-up built (modules, schemas, the catalogue, the map) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it (intake's took 60 ms,
        # stalling every request in flight: its p99 at 200 requests/s)
        gc.collect()
        gc.freeze()
        tune_collector()
        log.info("service started", http=f"{settings.http_host}:{settings.http_port}")
        try:
            yield
        finally:
            await service.runtime.stop()
            log.info("service stopped")

    # every operation documents the problem-details answers it may give (a route may add its own)
    app = FastAPI(title=title, version=version, description=description, lifespan=lifespan, docs_url=None,
                  redoc_url=None, responses=problem_responses())
    install_auth(app, settings)
    install_problem_handlers(app)
    install_protection(app, max_body_bytes=settings.max_body_bytes, console_origin=settings.console_origin,
                       oversize_response=oversize_response)
    app.add_middleware(AccessLog)  # outside the protection: a refused request is logged too
    install_docs(app)
    _document_naive_times_as_partial_time(app)
    app.include_router(health_router())
    return app


def _document_naive_times_as_partial_time(app: FastAPI) -> None:
    """pydantic documents a ``time`` as JSON Schema's ``time`` format, which requires an offset
    (RFC 3339 full-time), and writes a naive one as ``09:00:00``: the document then contradicts
    the answers. A naive time is RFC 3339's ``partial-time``, and is documented so."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            stack: list[Any] = [generate()]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if node.get("format") == "time":
                        node["format"] = "partial-time"
                    stack.extend(node.values())
                elif isinstance(node, list):
                    stack.extend(node)
        return app.openapi_schema

    app.openapi = openapi


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run the app under uvicorn (uvloop, httptools) until SIGINT/SIGTERM; shut down cleanly."""
    configure_logging(service=settings.service_name, level=settings.log_level, json=settings.log_json)
    configure_tracing(settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    instrument_app(app)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port, loop="uvloop", http="httptools",
                            log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=10)
    # Server.run builds the loop the config names; asyncio.run(server.serve()) would quietly run
    # on the standard loop (uvicorn >= 0.36 chooses the loop through a loop factory in run)
    try:
        uvicorn.Server(config).run()
    finally:
        shutdown_tracing()  # what is still buffered goes out


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
