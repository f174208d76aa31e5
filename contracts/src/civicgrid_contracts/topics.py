"""The topic registry: every topic on the bus, who owns it, how it is partitioned and kept.

Names follow ``<domain>.<stream>.v<N>``. Every request-keyed topic has the same partition count so
that they are co-partitioned: a consumer reading several of them together sees one request's
events on the same partition number everywhere. Audit-relevant topics are never deleted by time
(``retention.ms = -1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Partitions of every request-keyed topic; the ceiling on replicas of one consumer group.
REQUEST_PARTITIONS = 12
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    owner: str
    description: str
    partitions: int = REQUEST_PARTITIONS
    key: str = "request id"
    config: dict[str, str] = field(default_factory=lambda: dict(KEEP_FOREVER))
    audit_relevant: bool = True
    event_types: tuple[str, ...] = ()


REQUESTS = TopicSpec(
    "intake.requests.v1", "intake", "Residents' requests: received, merged, rated, reopened, closed",
    event_types=(
        "civicgrid.request.received", "civicgrid.request.merged", "civicgrid.request.unmerged",
        "civicgrid.request.rated", "civicgrid.request.reopened", "civicgrid.request.closed",
    ),
)
CATALOGUE = TopicSpec(
    "intake.catalogue.v1", "intake", "The service catalogue: every change to a service",
    partitions=1, key="service code", event_types=("civicgrid.catalogue.service_defined",),
)
CALENDAR = TopicSpec(
    "intake.calendar.v1", "intake", "The working calendar: every version of every year's calendar",
    partitions=1, key="year", event_types=("civicgrid.calendar.year_defined",),
)
ASSIGNMENTS = TopicSpec(
    "grid.assignments.v1", "grid",
    "Assignment and handling: assigned, accepted, noted, volunteers requested, departments "
    "dispatched/acknowledged/reported, resolved, transferred, reassigned, rejected",
    event_types=(
        "civicgrid.request.assigned", "civicgrid.request.accepted", "civicgrid.request.noted",
        "civicgrid.request.volunteer_requested", "civicgrid.request.department_dispatched",
        "civicgrid.request.department_acknowledged", "civicgrid.request.department_reported",
        "civicgrid.request.resolved", "civicgrid.request.transferred", "civicgrid.request.reassigned",
        "civicgrid.request.rejected",
    ),
)
VOLUNTEERS = TopicSpec(
    "matching.volunteers.v1", "matching", "Volunteer offers, answers, expiries, unmatched, service delivered",
    event_types=(
        "civicgrid.volunteer.offered", "civicgrid.volunteer.accepted", "civicgrid.volunteer.declined",
        "civicgrid.volunteer.offer_expired", "civicgrid.volunteer.offer_withdrawn",
        "civicgrid.volunteer.unmatched", "civicgrid.volunteer.service_delivered",
    ),
)
SUPERVISION = TopicSpec(
    "audit.supervision.v1", "audit", "Escalations raised by supervision when a time limit passes",
    event_types=("civicgrid.request.escalated",),
)

STAFF_ACCESS = TopicSpec(
    "staff.access.v1", "intake, grid",
    "Staff reads of residents' contact details and administrative changes (who, what, why; never the data)",
    partitions=3, key="request id or administered object",
    event_types=("civicgrid.access.contact_read", "civicgrid.access.admin_changed"),
)

EVENT_TOPICS: tuple[TopicSpec, ...] = (REQUESTS, CATALOGUE, CALENDAR, ASSIGNMENTS, VOLUNTEERS, SUPERVISION,
                                      STAFF_ACCESS)


def dead_letter(consumer_group: str) -> TopicSpec:
    """The dead-letter topic of one consumer group: messages it could not process, with the reason
    in headers (``dlq_reason``, ``dlq_topic``, ``dlq_partition``, ``dlq_offset``, ``dlq_attempts``)."""
    return TopicSpec(
        f"dlq.{consumer_group}.v1", consumer_group,
        f"Messages the {consumer_group} consumers could not process, with the reason",
        partitions=1, key="original key", audit_relevant=True,
    )


CONSUMER_GROUPS = ("intake", "grid", "matching", "audit")
DEAD_LETTER_TOPICS: tuple[TopicSpec, ...] = tuple(dead_letter(g) for g in CONSUMER_GROUPS)
#: The topics each service reads (its consumer group's and its group-less readers': the calendar every
#: service follows, intake's duplicate window). Owners write; the chart's Kafka ACLs are made from both.
READS: dict[str, tuple[TopicSpec, ...]] = {
    "intake": (REQUESTS, CALENDAR, ASSIGNMENTS, VOLUNTEERS, SUPERVISION),
    "grid": (REQUESTS, CATALOGUE, CALENDAR, SUPERVISION, VOLUNTEERS),
    "matching": (REQUESTS, CATALOGUE, CALENDAR, ASSIGNMENTS),
    "audit": EVENT_TOPICS,
}
ALL_TOPICS: tuple[TopicSpec, ...] = EVENT_TOPICS + DEAD_LETTER_TOPICS


def is_request_event(event_type: str) -> bool:
    """True for events about one request (keyed by its id); False for the catalogue's and the calendar's."""
    return topic_of(event_type).key == "request id"


def topic_of(event_type: str) -> TopicSpec:
    for spec in EVENT_TOPICS:
        if event_type in spec.event_types:
            return spec
    raise KeyError(f"no topic carries {event_type}")
