"""Real components for the recording tests: generated audio, a loopback HTTP(S) server, an OpenSSH sshd."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncssh
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SECRET = "s3cret-token-value"


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=60)


def _ffmpeg(*args: str | Path) -> None:
    _run("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args)


@dataclass
class AudioFiles:
    """Every file the audio and fetch tests need, generated once per session with sox, ffmpeg, espeak-ng."""

    root: Path
    stereo_wav: Path = field(init=False)
    stereo_mp3: Path = field(init=False)
    stereo_m4a: Path = field(init=False)
    stereo_aac: Path = field(init=False)
    audio_mp4: Path = field(init=False)
    video_mp4: Path = field(init=False)
    mono_speech_wav: Path = field(init=False)
    mulaw_wav: Path = field(init=False)
    half_silent_wav: Path = field(init=False)
    three_channel_wav: Path = field(init=False)
    flac: Path = field(init=False)
    mp3_with_cover: Path = field(init=False)
    mp3_named_wav: Path = field(init=False)
    corrupt_mp4: Path = field(init=False)
    corrupt_wav: Path = field(init=False)
    truncated_wav: Path = field(init=False)
    truncated_m4a: Path = field(init=False)
    html_page: Path = field(init=False)
    random_bytes: Path = field(init=False)
    empty: Path = field(init=False)

    def build(self) -> None:
        r = self.root
        # caller (channel 0) 440 Hz, agent (channel 1) 1000 Hz: the swap tests look for these peaks.
        self.stereo_wav = r / "stereo.wav"
        _run(
            "sox",
            "-n",
            "-r",
            "16000",
            "-c",
            "2",
            "-b",
            "16",
            self.stereo_wav,
            "synth",
            "2",
            "sine",
            "440",
            "sine",
            "1000",
        )
        self.stereo_mp3 = r / "stereo.mp3"
        _ffmpeg("-i", self.stereo_wav, "-c:a", "libmp3lame", "-b:a", "64k", self.stereo_mp3)
        self.stereo_m4a = r / "stereo.m4a"
        _ffmpeg("-i", self.stereo_wav, "-c:a", "aac", "-b:a", "64k", self.stereo_m4a)
        self.stereo_aac = r / "stereo.aac"
        _ffmpeg("-i", self.stereo_wav, "-c:a", "aac", "-b:a", "64k", "-f", "adts", self.stereo_aac)
        self.audio_mp4 = r / "audio.mp4"
        _ffmpeg("-i", self.stereo_wav, "-c:a", "aac", "-b:a", "64k", self.audio_mp4)
        self.video_mp4 = r / "video.mp4"
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=2", "-i", self.stereo_wav,
            "-c:v", "mpeg4", "-c:a", "aac", "-shortest", self.video_mp4,
        )  # fmt: skip
        self.mono_speech_wav = r / "mono-speech.wav"
        _run("espeak-ng", "-w", self.mono_speech_wav, "Thank you for calling. How can I help you today?")
        self.mulaw_wav = r / "mulaw.wav"
        _ffmpeg("-i", self.stereo_wav, "-ar", "8000", "-c:a", "pcm_mulaw", self.mulaw_wav)
        # channel 0: 1 s tone then 1 s digital silence; channel 1: 2 s digital silence.
        tone, silence = r / "tone.wav", r / "silence.wav"
        _run("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", tone, "synth", "1", "sine", "440", "pad", "0", "1")
        _run("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", silence, "trim", "0", "2")
        self.half_silent_wav = r / "half-silent.wav"
        _run("sox", "-D", "-M", tone, silence, self.half_silent_wav)  # -D: no dither, true digital silence
        self.three_channel_wav = r / "three.wav"
        _run("sox", "-n", "-r", "8000", "-c", "3", self.three_channel_wav, "synth", "1", "sine", "300")
        self.flac = r / "stereo.flac"
        _run("sox", self.stereo_wav, self.flac)
        cover = r / "cover.png"
        _ffmpeg("-f", "lavfi", "-i", "color=c=red:size=32x32", "-frames:v", "1", cover)
        self.mp3_with_cover = r / "cover.mp3"
        _ffmpeg(
            "-i", self.stereo_mp3, "-i", cover, "-map", "0", "-map", "1", "-c", "copy",
            "-id3v2_version", "3", "-disposition:v", "attached_pic", self.mp3_with_cover,
        )  # fmt: skip
        self.mp3_named_wav = r / "actually-mp3.wav"
        shutil.copy(self.stereo_mp3, self.mp3_named_wav)
        rng = os.urandom(20_000)
        self.corrupt_mp4 = r / "corrupt.mp4"
        self.corrupt_mp4.write_bytes(self.audio_mp4.read_bytes()[:32] + rng)
        self.corrupt_wav = r / "corrupt.wav"
        self.corrupt_wav.write_bytes(b"RIFF" + (len(rng) + 4).to_bytes(4, "little") + b"WAVE" + rng)
        data = self.stereo_wav.read_bytes()
        self.truncated_wav = r / "truncated.wav"
        self.truncated_wav.write_bytes(data[: len(data) * 6 // 10])
        data = self.stereo_m4a.read_bytes()  # ffmpeg writes moov last, so the cut loses the index
        self.truncated_m4a = r / "truncated.m4a"
        self.truncated_m4a.write_bytes(data[: len(data) // 2])
        self.html_page = r / "error.mp3"
        self.html_page.write_bytes(b"<!DOCTYPE html><html><body>Access denied</body></html>")
        self.random_bytes = r / "random.mp3"
        self.random_bytes.write_bytes(b"\x00\x01garbage" + rng)
        self.empty = r / "empty.wav"
        self.empty.write_bytes(b"")


@pytest.fixture(scope="session")
def audio(tmp_path_factory: pytest.TempPathFactory) -> AudioFiles:
    files = AudioFiles(tmp_path_factory.mktemp("audio"))
    files.build()
    return files


# --- loopback HTTP(S) server ------------------------------------------------------------------------------------


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]


class RecordingServer:
    """A real HTTP server on 127.0.0.1 with the routes the fetch tests need; it records what it saw."""

    def __init__(self, files: dict[str, Path], tls: ssl.SSLContext | None = None) -> None:
        self.files = files
        self.seen: list[SeenRequest] = []
        self.sni: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.seen.append(SeenRequest(self.path, {k.lower(): v for k, v in self.headers.items()}))
                try:
                    server.route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment]
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def route(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        parts = parsed.path.strip("/").split("/")
        head, rest = parts[0], parts[1:]
        if head == "files":
            return self._send_file(h, rest[0])
        if head == "redirect":
            return self._redirect(h, query["to"], int(query.get("code", "302")))
        if head == "chain":  # /chain/3 -> /chain/2 -> ... -> /files/stereo.wav
            n = int(rest[0])
            return self._redirect(h, f"/chain/{n - 1}" if n > 0 else "/files/stereo.wav", 302)
        if head == "status":
            h.send_response(int(rest[0]))
            h.send_header("Retry-After", "7")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if head == "big":  # close-delimited body, no Content-Length: only counting can stop it
            h.send_response(200)
            h.send_header("Connection", "close")
            h.end_headers()
            block = b"\0" * 65536
            for _ in range(int(rest[0]) // 65536):
                h.wfile.write(block)
            return None
        if head == "declared-big":
            h.send_response(200)
            h.send_header("Content-Length", str(10**12))
            h.end_headers()
            return None
        if head == "slow":  # a trickle that never trips a read timeout, only the total cap
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            for _ in range(1000):
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.05)
            return None
        if head == "reset":  # promise 100 kB, send 10, hang up
            h.send_response(200)
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b"x" * 10_000)
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            return None
        if head == "auth":
            method, name = rest[0], rest[1]
            headers = {k.lower(): v for k, v in h.headers.items()}
            ok = {
                "bearer": headers.get("authorization") == f"Bearer {SECRET}",
                "query": query.get("api_key") == SECRET,
                "header": headers.get("x-recording-key") == SECRET,
            }[method]
            if ok:
                return self._send_file(h, name)
            h.send_response(403 if method != "bearer" else 401)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if head == "auth-redirect":  # authenticated, then hands off to another origin
            headers = {k.lower(): v for k, v in h.headers.items()}
            if headers.get("authorization") != f"Bearer {SECRET}":
                h.send_response(401)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return None
            return self._redirect(h, query["to"], 302)
        h.send_response(404)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return None

    def _send_file(self, h: BaseHTTPRequestHandler, name: str) -> None:
        path = self.files.get(name)
        if path is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = path.read_bytes()
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _redirect(h: BaseHTTPRequestHandler, to: str, code: int) -> None:
        h.send_response(code)
        h.send_header("Location", to)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _served_files(audio: AudioFiles) -> dict[str, Path]:
    return {p.name: p for p in (audio.stereo_wav, audio.stereo_mp3, audio.stereo_m4a, audio.video_mp4)}


@pytest.fixture(scope="session")
def http_server(audio: AudioFiles) -> Iterator[RecordingServer]:
    with RecordingServer(_served_files(audio)) as server:
        yield server


@dataclass
class TlsMaterial:
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext


def _self_signed(tmp: Path) -> TlsMaterial:
    """A certificate for the name ``localhost`` only: connecting by IP must fail verification."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = tmp / "cert.pem"
    key_pem = tmp / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_pem, key_pem)
    client_context = ssl.create_default_context(cafile=str(cert_pem))
    return TlsMaterial(server_context, client_context)


@pytest.fixture(scope="session")
def tls_server(
    audio: AudioFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RecordingServer, ssl.SSLContext]]:
    material = _self_signed(tmp_path_factory.mktemp("tls"))
    with RecordingServer(_served_files(audio), tls=material.server_context) as server:
        yield server, material.client_context


# --- OpenSSH sshd -----------------------------------------------------------------------------------------------


@dataclass
class Sshd:
    port: int
    username: str
    host_public_key: str
    user_private_key: str
    root: Path  # the SFTP base folder lives under here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_banner(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not start")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real OpenSSH server on a random loopback port with its own host key and an authorized user key."""
    tmp = tmp_path_factory.mktemp("sshd")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key_file = tmp / "ssh_host_ed25519_key"
    host_key.write_private_key(str(host_key_file))
    host_key_file.chmod(0o600)
    authorized = tmp / "authorized_keys"
    user_key.write_public_key(str(authorized))
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key_file}\nPidFile {tmp / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        "LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # OpenSSH's compiled-in privilege-separation dir
    log = tmp / "sshd.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=log_file)
    try:
        _wait_for_banner(port, process, log)
        root = tmp / "sftp-root"
        root.mkdir()
        yield Sshd(
            port=port,
            username=os.environ.get("USER") or _current_user(),
            host_public_key=host_key.export_public_key().decode(),
            user_private_key=user_key.export_private_key().decode(),
            root=root,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
