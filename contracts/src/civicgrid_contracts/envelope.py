"""The one envelope every civicgrid event travels in.

Modelled on CloudEvents 1.0 attributes and carried in the Kafka *binary* binding: attributes in
``ce_*`` headers, the payload alone as the JSON value, the key = subject = request id. Any
CloudEvents-aware tool can therefore read our topics. Extension attributes: ``correlationid``,
``causationid`` and ``schemaversion``, and the CloudEvents distributed-tracing extension's
``traceparent`` / ``tracestate`` (W3C trace context; set by the runtime, not by domain code).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from civicgrid_contracts.errors import MalformedEvent, UnknownEventType

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
#: Namespace for ids of events derived from another event: the same cause always yields the same
#: id, so a redelivered cause re-publishes an identical event that every reader ignores.
DERIVED_ID_NAMESPACE = uuid.UUID("6f0f3c1e-2f4b-4bb7-9d3c-6c1a9e1c2a10")


class EventPayload(BaseModel):
    """Base of every event payload: frozen, typed, and tolerant of fields it does not know.

    ``extra="ignore"`` is what makes *adding* an optional field backward compatible: older readers
    simply do not see it. Removing or retyping a field is a breaking change the schema
    compatibility test refuses.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    #: CloudEvents ``type``; unique across the bus.
    event_type: ClassVar[str]
    #: Schema version of this payload; bumped only with an upcaster for the older version.
    schema_version: ClassVar[int] = 1

    request_id: str = Field(description="The request this event is about; also the Kafka key and CloudEvents subject.")


_REGISTRY: dict[str, type[EventPayload]] = {}
#: (event_type, from_version) -> function that turns an old payload dict into the next version's dict
_UPCASTERS: dict[tuple[str, int], Any] = {}


def register(cls: type[EventPayload]) -> type[EventPayload]:
    """Class decorator: make an event type known to the decoder."""
    if cls.event_type in _REGISTRY:
        raise ValueError(f"duplicate event type {cls.event_type}")
    _REGISTRY[cls.event_type] = cls
    return cls


def upcaster(event_type: str, from_version: int):
    """Register a function turning version ``from_version`` of an event's data into the next."""

    def wrap(fn):
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return wrap


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """An event's data of schema ``version`` brought to the current version, through every upcaster
    on the way (a newer writer's data is returned as it is: unknown fields are ignored)."""
    current = payload_class(event_type).schema_version
    while version < current:
        up = _UPCASTERS.get((event_type, version))
        if up is None:
            raise MalformedEvent(f"no upcaster for {event_type} v{version}")
        data = up(data)
        version += 1
    return data


def has_upcasters(event_type: str, from_version: int) -> bool:
    """True when data of ``from_version`` can be brought to the current version."""
    current = payload_class(event_type).schema_version
    return all((event_type, v) in _UPCASTERS for v in range(from_version, current))


def payload_class(event_type: str) -> type[EventPayload]:
    try:
        return _REGISTRY[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None


def registered_events() -> dict[str, type[EventPayload]]:
    return dict(_REGISTRY)


def utcnow() -> datetime:
    return datetime.now(UTC)


def derived_event_id(cause_id: str, event_type: str, discriminator: str = "") -> str:
    """Deterministic id for an event caused by ``cause_id`` (idempotent re-publication)."""
    return str(uuid.uuid5(DERIVED_ID_NAMESPACE, f"{cause_id}|{event_type}|{discriminator}"))


class Envelope(BaseModel):
    """A CloudEvent with civicgrid's extension attributes and a typed payload."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str = Field(description="URI-reference of the producing service, e.g. /civicgrid/intake")
    type: str
    specversion: str = SPEC_VERSION
    time: datetime = Field(default_factory=utcnow)
    subject: str = Field(description="The request id (also the Kafka key)")
    datacontenttype: str = CONTENT_TYPE
    correlationid: str
    causationid: str | None = None
    schemaversion: int = 1
    #: W3C trace context (CloudEvents distributed-tracing extension): transport metadata, not the
    #: event's content, so ``to_document`` leaves it out unless asked (an audit trail's hash must not
    #: change with the span that happened to carry the event)
    traceparent: str | None = None
    tracestate: str | None = None
    data: EventPayload

    @classmethod
    def wrap(
        cls,
        payload: EventPayload,
        *,
        source: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> Envelope:
        eid = event_id or str(uuid.uuid4())
        return cls(
            id=eid,
            source=source,
            type=payload.event_type,
            time=time or utcnow(),
            subject=payload.request_id,
            correlationid=correlation_id or eid,
            causationid=causation_id,
            schemaversion=payload.schema_version,
            data=payload,
        )

    def caused(self, payload: EventPayload, *, source: str, discriminator: str = "",
               time: datetime | None = None) -> Envelope:
        """A new event caused by this one, with a deterministic id and the same correlation."""
        return Envelope.wrap(
            payload,
            source=source,
            correlation_id=self.correlationid,
            causation_id=self.id,
            event_id=derived_event_id(self.id, payload.event_type, discriminator),
            time=time,
        )

    # ------------------------------------------------------------------ Kafka binary binding

    def to_kafka(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) in the CloudEvents Kafka binary content mode."""
        headers = [
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_specversion", self.specversion.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("ce_subject", self.subject.encode()),
            ("ce_correlationid", self.correlationid.encode()),
            ("ce_schemaversion", str(self.schemaversion).encode()),
            ("content-type", self.datacontenttype.encode()),
        ]
        if self.causationid:
            headers.append(("ce_causationid", self.causationid.encode()))
        if self.traceparent:
            headers.append(("ce_traceparent", self.traceparent.encode()))
            if self.tracestate:
                headers.append(("ce_tracestate", self.tracestate.encode()))
        return self.subject.encode(), self.data.model_dump_json().encode(), headers

    @classmethod
    def from_kafka(cls, value: bytes | None, headers: list[tuple[str, bytes]] | tuple) -> Envelope:
        """Decode a binary-mode CloudEvent. Raises ``MalformedEvent`` with the reason."""
        attrs = {k[3:]: v.decode("utf-8", "replace") for k, v in headers if k[:3] == "ce_"}
        for required in ("id", "source", "type", "specversion", "subject", "correlationid"):
            if required not in attrs:
                raise MalformedEvent(f"missing CloudEvents attribute ce_{required}")
        if value is None:
            raise MalformedEvent("empty value")
        cls_ = payload_class(attrs["type"])
        try:
            version = int(attrs.get("schemaversion", "1"))
        except ValueError:
            raise MalformedEvent("ce_schemaversion is not an integer") from None
        try:
            if version != cls_.schema_version:
                payload = cls_.model_validate(upcast(attrs["type"], version, json.loads(value)))
            else:
                payload = cls_.model_validate_json(value)
        except MalformedEvent:
            raise
        except Exception as exc:  # pydantic ValidationError or JSON error: say which field
            raise MalformedEvent(f"payload does not match {attrs['type']} v{cls_.schema_version}: {exc}") from exc
        if payload.request_id != attrs["subject"]:
            raise MalformedEvent("ce_subject does not match data.request_id")
        return cls(
            id=attrs["id"],
            source=attrs["source"],
            type=attrs["type"],
            specversion=attrs["specversion"],
            time=datetime.fromisoformat(attrs["time"]) if "time" in attrs else utcnow(),
            subject=attrs["subject"],
            correlationid=attrs["correlationid"],
            causationid=attrs.get("causationid"),
            schemaversion=cls_.schema_version,
            traceparent=attrs.get("traceparent"),
            tracestate=attrs.get("tracestate"),
            data=payload,
        )

    def to_document(self, *, data: dict[str, Any] | None = None, with_trace: bool = False) -> dict[str, Any]:
        """Plain dict for storing in a document (outbox, audit log). ``data``: the payload dumped in
        JSON mode, where the caller has it already; ``with_trace``: keep the trace context too (an
        outbox does, so the relay's later publish continues the trace)."""
        doc = {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "subject": self.subject,
            "correlationid": self.correlationid,
            "causationid": self.causationid,
            "schemaversion": self.schemaversion,
            "data": data if data is not None else self.data.model_dump(mode="json"),
        }
        if with_trace and self.traceparent:
            doc["traceparent"] = self.traceparent
            if self.tracestate:
                doc["tracestate"] = self.tracestate
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Envelope:
        cls_ = payload_class(doc["type"])
        data = doc["data"]
        if doc.get("schemaversion", 1) != cls_.schema_version:
            data = upcast(doc["type"], doc.get("schemaversion", 1), data)
        payload = cls_.model_validate(data)
        t = doc["time"]
        if isinstance(t, datetime) and t.tzinfo is None:
            t = t.replace(tzinfo=UTC)  # BSON dates come back naive UTC
        return cls(
            id=doc["id"], source=doc["source"], type=doc["type"], time=t, subject=doc["subject"],
            correlationid=doc["correlationid"], causationid=doc.get("causationid"),
            schemaversion=cls_.schema_version, traceparent=doc.get("traceparent"),
            tracestate=doc.get("tracestate"), data=payload,
        )
