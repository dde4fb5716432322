"""Prometheus exporter front end: collector (snapshot -> metrics), feeder, HTTP server.

``build_app`` wires them the same way for the command, the tests and the benchmark."""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry

from mdtrace.frontends.exporter.collector import SnapshotCollector
from mdtrace.frontends.exporter.feed import Feed
from mdtrace.frontends.exporter.server import BasicAuth, MetricsApp


def build_app(feeder: Feed, auth: BasicAuth | None = None) -> MetricsApp:
    """A WSGI app over its own registry (never prometheus_client's global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(feeder.snapshot, feeder.extra))
    return MetricsApp(registry, version_fn=feeder.version, auth=auth)
