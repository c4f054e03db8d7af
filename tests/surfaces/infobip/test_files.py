"""`/calls/1/files` driven by the official client: real WAV and MP3 uploads, checked with PyAV."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from infobip_api_client.api.calls_api import CallsApi
from infobip_api_client.exceptions import ApiException

from callplane.media.audio import write_wav
from callplane.testing.factories import Admin
from callplane.testing.infobip import calls_api
from callplane.testing.server import RunningServer


def _tone_wav(path: Path, seconds: float) -> str:
    """The client uploads a path under its own file name."""
    t = np.arange(int(8000 * seconds)) / 8000.0
    write_wav(path, (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
    return str(path)


def _mp3(path: Path, seconds: float) -> str:
    source = f"sine=frequency=600:duration={seconds}"
    encode = ["-ar", "16000", "-codec:a", "libmp3lame", "-b:a", "32k"]
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, *encode, "-y", str(path)], check=True)
    return str(path)


def test_upload_list_get_delete_with_the_official_client(calls: CallsApi, tmp_path: Path) -> None:
    wav = calls.upload_calls_audio_file(file=_tone_wav(tmp_path / "welcome.wav", 2.0))
    assert (wav.name, wav.file_format, wav.duration) == ("welcome.wav", "WAV", 2)
    assert wav.size == (tmp_path / "welcome.wav").stat().st_size
    assert wav.creation_time is not None and wav.expiration_time is not None
    assert (wav.expiration_time - wav.creation_time).days == 90

    mp3 = calls.upload_calls_audio_file(file=_mp3(tmp_path / "menu.mp3", 3.0))
    assert mp3.file_format == "MP3" and mp3.duration in (3, 4)  # an MP3 encoder pads the last frame

    page = calls.get_calls_files(page=0, size=1)
    assert page.paging is not None and (page.paging.total_results, page.paging.total_pages) == (2, 2)
    assert [item.id for item in page.results or []] == [wav.id]
    assert calls.get_calls_file(mp3.id).name == "menu.mp3"

    deleted = calls.delete_calls_file(wav.id)
    assert deleted.id == wav.id and deleted.file_format == "WAV"
    with pytest.raises(ApiException) as gone:
        calls.get_calls_file(wav.id)
    assert gone.value.status == 404
    assert calls.get_calls_files().paging.total_results == 1  # type: ignore[union-attr]


def test_files_that_are_not_wav_or_mp3_audio_are_refused(calls: CallsApi, tmp_path: Path) -> None:
    for name, content in [
        ("notes.txt", b"hello, this is not audio"),
        ("broken.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 20),
        ("empty.mp3", b""),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ApiException) as refused:
            calls.upload_calls_audio_file(file=str(tmp_path / name))
        assert refused.value.status == 400, name
        assert refused.value.body is not None
        exception = json.loads(refused.value.body)["requestError"]["serviceException"]
        assert exception["messageId"] == "BAD_REQUEST" and "file" in exception["validationErrors"], name


def test_files_are_tenant_scoped(
    server: RunningServer, admin: Admin, calls: CallsApi, voice_http: httpx.Client, tmp_path: Path
) -> None:
    mine = calls.upload_calls_audio_file(file=_tone_wav(tmp_path / "mine.wav", 0.5))
    stranger = calls_api(server.base_url, admin.network().token)
    with pytest.raises(ApiException) as hidden:
        stranger.delete_calls_file(mine.id)
    assert hidden.value.status == 404
    assert stranger.get_calls_files().paging.total_results == 0  # type: ignore[union-attr]
    assert voice_http.get(f"/calls/1/files/{mine.id}").status_code == 200
    stored = list((server.settings.data_dir / "voice-files").rglob(f"{mine.id}.wav"))
    assert len(stored) == 1 and stored[0].read_bytes() == (tmp_path / "mine.wav").read_bytes()


def test_an_upload_without_a_file_is_a_400_and_one_over_the_limit_a_413(voice_http: httpx.Client) -> None:
    missing = voice_http.post("/calls/1/files", files={"other": ("x.wav", b"RIFF")})
    assert missing.status_code == 400
    assert "file" in missing.json()["requestError"]["serviceException"]["validationErrors"]
    # Announce 64 MiB and send none of it: the answer comes from the Content-Length alone (the body limit).
    url = httpx.URL(str(voice_http.base_url))
    with socket.create_connection((url.host, url.port or 80), timeout=30) as raw:
        raw.sendall(
            b"POST /calls/1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + f"Authorization: {voice_http.headers['Authorization']}\r\n".encode()
            + f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode()
        )
        answer = b"".join(iter(lambda: raw.recv(65536), b"")).decode()  # the refusal closes the connection
    assert answer.startswith("HTTP/1.1 413") and '"messageId":"PAYLOAD_TOO_LARGE"' in answer
