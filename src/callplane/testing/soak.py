"""Pieces of the fault soak (tests/pipeline/test_fault_soak.py): a `callplane serve` process that can be
killed and started again, and an HTTPS receiver on loopback that records every webhook and callback it gets."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import ipaddress
import json
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own trust anchor); returns (cert.pem, key.pem).

    A process started with ``SSL_CERT_FILE`` pointing at it trusts the receiver, and nothing else changes.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callplane soak receiver")])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = directory / "receiver-cert.pem"
    key_pem = directory / "receiver-key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_pem, key_pem


@dataclass(frozen=True)
class Receipt:
    path: str
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    status: int


class NotificationReceiver:
    """HTTPS on 127.0.0.1; records every POST. ``refuse_first_per_mille`` of the delivery ids (chosen by a hash of
    id and seed) get 503 on their first request, so retries run too; every later request is answered 204."""

    def __init__(self, cert_pem: Path, key_pem: Path, *, seed: int = 0, refuse_first_per_mille: int = 0) -> None:
        self._lock = threading.Lock()
        self._receipts: list[Receipt] = []
        self._seen: set[str] = set()
        self._accepted_ids: set[str] = set()
        self._types: Counter[str] = Counter()  # distinct accepted delivery ids by event type
        self._seed = seed
        self._refuse = refuse_first_per_mille
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                declared = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(declared)
                if len(body) < declared:
                    # The sender died mid-request (SIGKILL): a real receiver never sees that as a delivery.
                    self.close_connection = True
                    return
                status = receiver._answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert_pem, key_pem)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.base_url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> NotificationReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        webhook_id = headers.get("webhook-id", "")
        digest = hashlib.sha256(f"{self._seed}:{webhook_id}".encode()).digest()
        with self._lock:
            first = webhook_id not in self._seen
            self._seen.add(webhook_id)
            status = 503 if first and int.from_bytes(digest[:4]) % 1000 < self._refuse else 204
            if status == 204 and webhook_id not in self._accepted_ids:
                self._accepted_ids.add(webhook_id)
                self._types[_event_type(path, body)] += 1
            self._receipts.append(Receipt(path, webhook_id, headers, body, status))
        return status

    def distinct_accepted(self, event_type: str) -> int:
        """Distinct delivery ids accepted so far of one webhook event type (callbacks count as "callback")."""
        with self._lock:
            return self._types[event_type]

    def receipts(self) -> list[Receipt]:
        with self._lock:
            return list(self._receipts)

    def accepted(self) -> list[Receipt]:
        """Requests answered 2xx, redeliveries of one id included."""
        return [r for r in self.receipts() if 200 <= r.status < 300]

    def redelivered(self) -> int:
        """How many accepted requests repeated an id already accepted (at-least-once delivery at work)."""
        counts = Counter(r.webhook_id for r in self.accepted())
        return sum(n - 1 for n in counts.values())


def _event_type(path: str, body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return "unparsable"
    return str(parsed.get("type", "callback")) if isinstance(parsed, dict) else "unparsable"


class ServeProcess:
    """`callplane serve` as its own process, on one port, started again after each kill."""

    def __init__(self, environment: dict[str, str], port: int, log: Path) -> None:
        self.environment = environment
        self.port = port
        self.log = log
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
                [sys.executable, "-m", "callplane", "serve", "--port", str(self.port)],
                env=self.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"callplane serve exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("callplane serve did not become ready")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no lease released, transactions in flight cut off."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
