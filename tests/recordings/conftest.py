"""Fixtures for the recording tests; the real components behind them live in ``recordings_support``."""

from recordings_support import audio, http_server, sshd, tls_server

__all__ = ["audio", "http_server", "sshd", "tls_server"]
