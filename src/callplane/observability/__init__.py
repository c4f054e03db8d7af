"""Prometheus metrics and OpenTelemetry traces: one registry every layer (core, media, live, surfaces) may import."""
