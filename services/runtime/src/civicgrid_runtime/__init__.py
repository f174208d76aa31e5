"""The small runtime every civicgrid service shares: settings, broker, store, outbox, logging,
health, metrics, auth and problem details. Nothing domain-specific lives here."""

from civicgrid_runtime.bus import Delivery, EventConsumer, EventPublisher, ensure_topics, per_event
from civicgrid_runtime.problems import Problem
from civicgrid_runtime.service import Runtime, create_app, serve
from civicgrid_runtime.settings import ServiceSettings

__all__ = ["Delivery", "EventConsumer", "EventPublisher", "Problem", "Runtime", "ServiceSettings", "create_app",
           "ensure_topics", "per_event", "serve"]
