"""Structured logs: one JSON object per line, never carrying secrets.

Redaction happens in one place, ``RedactingFilter``, installed on the root handler: every logger's records (ours,
httpx's ``HTTP Request: GET <full URL>``, uvicorn's, sippy's through ours) pass through it before any formatter.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TextIO

REDACTED = "[redacted]"

# Query parameters, header names and field names whose values are secrets (compared lowercased). A name also
# counts when it ends with one of SECRET_NAME_SUFFIXES: oauth_token, x-amz-security-token, webhook-signature,
# client_secret... Azure SAS: only `sig` is the secret (`se`, `sp`, `sv` are expiry, permissions, version).
SECRET_NAMES = frozenset(
    {
        "key",
        "apikey",
        "api_key",
        "api-key",
        "token",
        "access_token",
        "auth",
        "password",
        "passwd",
        "pwd",
        "secret",
        "signature",
        "sig",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "credential",
    }
)
SECRET_NAME_SUFFIXES = ("token", "secret", "password", "signature", "credential", "apikey", "api_key", "api-key")

# Bounded repeats keep every pattern linear in the text's length (a log line may hold attacker-chosen input).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,31}://)[^\s/?#@\"'<>]{1,512}@")
# name=value in a query string (or anywhere in free text); the name must not continue a longer word.
_NAME_VALUE = re.compile(r"(?<![\w.\-])([\w.\-]+)=([^&;\s#\"'<>]+)")
# secret-name: value, as a header line or a quoted key in a dict/JSON rendering; quoted values end at their quote,
# unquoted ones run to the end of the line (``Authorization: Bearer abc``). Only secret names match, so a
# harmless ``status: 401`` never swallows a secret later on its line.
_SECRET_NAME_PATTERN = "|".join(re.escape(name) for name in sorted(SECRET_NAMES, key=len, reverse=True))
_SECRET_SUFFIX_PATTERN = "|".join(re.escape(suffix) for suffix in SECRET_NAME_SUFFIXES)
_NAME_COLON_VALUE = re.compile(
    rf"""(?i)(?<![\w\-])(["']?)((?:{_SECRET_NAME_PATTERN})|[\w\-]*(?:{_SECRET_SUFFIX_PATTERN}))\1([ \t]*:[ \t]*)"""
    r"""("(?:[^"\\\r\n]|\\.)*"|'(?:[^'\\\r\n]|\\.)*'|[^\s"',}][^\r\n"',}]*)"""
)


@lru_cache(maxsize=1024)  # field, header and parameter names repeat from record to record
def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_NAMES or lowered.endswith(SECRET_NAME_SUFFIXES)


def _hide_name_value(match: re.Match[str]) -> str:
    return f"{match[1]}={REDACTED}" if is_secret_name(match[1]) else match[0]


def _hide_name_colon_value(match: re.Match[str]) -> str:
    value = match[4]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match[1]}{match[2]}{match[1]}{match[3]}{quote}{REDACTED}{quote}"


def redact(text: str) -> str:
    """Hide URL credentials and the values of secret-named parameters and headers in a piece of text."""
    if "://" in text:
        text = _URL_USERINFO.sub(r"\1***@", text)
    if "=" in text:
        text = _NAME_VALUE.sub(_hide_name_value, text)
    if ":" in text:
        text = _NAME_COLON_VALUE.sub(_hide_name_colon_value, text)
    return text


def redact_value(value: Any, name: str = "") -> Any:
    """A structured value with secrets hidden: secret-named keys lose their values, strings are redacted."""
    if name and value is not None and value != "" and is_secret_name(name):
        return REDACTED
    kind = type(value)
    if kind is str:
        return redact(value)
    if value is None or kind is int or kind is float or kind is bool:
        return value
    if isinstance(value, Mapping):
        return {key: redact_value(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(item) for item in value]
    if isinstance(value, (int, float)):
        return value
    return redact(str(value))


# Attributes every LogRecord has; anything else came from ``extra=`` and is redacted like the message.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "redacted"}
_exception_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites each record in place, once: message with its arguments, exception text, stack, extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a malformed logging call must not raise into the caller
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        attributes = vars(record)
        for name in attributes.keys() - _RECORD_ATTRIBUTES:
            attributes[name] = redact_value(attributes[name], name)
        record.redacted = True
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


def log_handler(stream: TextIO | None = None, fmt: str = "json") -> logging.Handler:
    """The handler every record goes through: redaction first, then one JSON object (or text line) per record."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    return handler


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    root = logging.getLogger()
    root.handlers[:] = [log_handler(fmt=fmt)]
    root.setLevel(level.upper())
    # Our request log covers what uvicorn's access log would say (it goes through the same redaction if enabled).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
