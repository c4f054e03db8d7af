"""Recording URLs as the ingestion surfaces accept them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Spaces, CR, LF and other controls: a URL holding one is not a URL (RFC 3986), and CR LF would split a request
# line or a log line downstream.
_BLANK_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def is_http_url(text: str) -> bool:
    """An absolute http or https URL with a host, and no whitespace or control character anywhere in it."""
    if _BLANK_OR_CONTROL.search(text):
        return False
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
