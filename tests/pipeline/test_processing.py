"""Accepted calls are processed end to end: fetched over loopback HTTP, checked, normalized, stored, served."""

from __future__ import annotations

import io
import secrets
from typing import Any

import av
import httpx
import numpy as np

from tests.pipeline.conftest import FileServer, Pipeline, invoca_call, make_tone, wait_for_outcome

URL = "/api/2022-03-01/calls.json"


def _submit(client: httpx.Client, token: str, call: dict[str, Any]) -> str:
    response = client.post(URL, headers={"Authorization": token}, json={"call": call})
    assert response.status_code == 201, response.text
    return str(response.json()["cuid"])


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def _decode(mp3: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(mp3)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        rate = stream.rate
    planes = np.concatenate(frames, axis=1).astype(np.float64)
    return planes, rate


def test_stereo_recording_is_processed_and_served(pipeline: Pipeline, files: FileServer) -> None:
    network = pipeline.admin.network()
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        call_id = _submit(client, network.token, invoca_call(files.url("stereo.wav")))
        call = wait_for_outcome(client, network.token, call_id)
        assert call["status"] == "completed", call
        recording = call["recording"]
        assert recording["sample_rate"] == 8000 and recording["channels"] == 2
        assert abs(recording["duration_ms"] - 3000) < 150
        assert [level["role"] for level in recording["levels"]] == ["caller", "agent"]
        assert recording["original"]["format"] == "wav" and recording["original"]["channels"] == 2
        job = call["jobs"][0]
        assert job["status"] == "succeeded"
        assert [(h["stage"], h["outcome"]) for h in job["history"]] == [
            ("recording", "succeeded"),
            ("transcribe", "succeeded"),
            ("finalize", "succeeded"),
        ]
        headers = {"Authorization": f"Bearer {network.token}"}
        whole = client.get(f"/v1/calls/{call_id}/recording", headers=headers)
        assert whole.status_code == 200 and whole.headers["content-type"] == "audio/mpeg"
        assert len(whole.content) == recording["size_bytes"]
        part = client.get(f"/v1/calls/{call_id}/recording", headers=headers | {"Range": "bytes=10-109"})
        assert part.status_code == 206 and part.content == whole.content[10:110]
        assert part.headers["content-range"] == f"bytes 10-109/{recording['size_bytes']}"
        tail = client.get(f"/v1/calls/{call_id}/recording", headers=headers | {"Range": "bytes=-50"})
        assert tail.content == whole.content[-50:]
        bad = client.get(f"/v1/calls/{call_id}/recording", headers=headers | {"Range": "bytes=999999999-"})
        assert bad.status_code == 416
        planes, rate = _decode(whole.content)
        assert rate == 8000 and planes.shape[0] == 2
        assert abs(_dominant_hz(planes[0], rate) - 440) < 20 and abs(_dominant_hz(planes[1], rate) - 1000) < 20


def test_outbound_calls_are_swapped(pipeline: Pipeline, files: FileServer) -> None:
    network = pipeline.admin.network()
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        call_id = _submit(client, network.token, invoca_call(files.url("stereo.wav"), call_direction="outbound"))
        assert wait_for_outcome(client, network.token, call_id)["status"] == "completed"
        mp3 = client.get(f"/v1/calls/{call_id}/recording", headers={"Authorization": f"Bearer {network.token}"})
        planes, rate = _decode(mp3.content)
        assert abs(_dominant_hz(planes[0], rate) - 1000) < 20 and abs(_dominant_hz(planes[1], rate) - 440) < 20


def test_mono_is_refused_on_the_single_call_surface(pipeline: Pipeline, files: FileServer) -> None:
    network = pipeline.admin.network()
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        call = wait_for_outcome(
            client, network.token, _submit(client, network.token, invoca_call(files.url("mono.wav")))
        )
        assert call["status"] == "failed"
        assert "dual-channel" in call["status_reason"]
        assert call["jobs"][0]["status"] == "failed"
        assert call["jobs"][0]["history"][-1]["outcome"] == "failed"


def test_mono_is_accepted_on_the_batch_surface(pipeline: Pipeline, files: FileServer) -> None:
    partner = pipeline.admin.partner()
    item = {
        "call": {
            "id": secrets.token_hex(5),
            "recording_url": files.url("mono.wav"),
            "start_time": "2023-01-01T10:00:00Z",
            "end_time": "2023-01-01T10:00:03Z",
            "contact_number": "+1234567890",
        }
    }
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        assert (
            client.post("/partner/ingest/batch-call", headers=partner.headers, json={"data": [item]}).status_code == 200
        )
        [listed] = client.get("/v1/calls", headers={"Authorization": f"Bearer {partner.token}"}).json()["calls"]
        call = wait_for_outcome(client, partner.token, listed["id"])
        assert call["status"] == "completed"
        assert call["recording"]["channels"] == 1 and call["recording"]["original"]["single_channel"] is True


def test_failed_call_is_retried_from_its_failed_stage(pipeline: Pipeline, files: FileServer) -> None:
    network = pipeline.admin.network()
    name = f"late-{secrets.token_hex(4)}.wav"
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        call_id = _submit(client, network.token, invoca_call(files.url(name)))
        failed = wait_for_outcome(client, network.token, call_id)
        assert failed["status"] == "failed" and "404" in failed["status_reason"]
        headers = {"Authorization": f"Bearer {network.token}"}
        make_tone(files.root / name, left_hz=300, right_hz=600)
        retried = client.post(f"/v1/calls/{call_id}/retry", headers=headers)
        assert retried.status_code == 200 and retried.json()["status"] == "queued"
        done = wait_for_outcome(client, network.token, call_id)
        assert done["status"] == "completed"
        outcomes = [h["outcome"] for h in done["jobs"][0]["history"]]
        assert outcomes[0] == "failed" and outcomes[-2:] == ["succeeded", "succeeded"]
        assert client.post(f"/v1/calls/{call_id}/retry", headers=headers).status_code == 409


def test_recording_filename_from_the_drop_folder(pipeline: Pipeline, files: FileServer) -> None:
    network = pipeline.admin.network()
    external_id = f"drop-{secrets.token_hex(4)}"
    (pipeline.drop_dir / external_id).write_bytes((files.root / "stereo.wav").read_bytes())
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        call_id = _submit(client, network.token, invoca_call(None, external_call_unique_id=external_id))
        assert wait_for_outcome(client, network.token, call_id)["status"] == "completed"


def test_private_targets_are_refused(pipeline: Pipeline) -> None:
    network = pipeline.admin.network()
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        # 127.0.0.2 is loopback but not allow-listed (the tests allow 127.0.0.1 only): refused before connecting.
        call = wait_for_outcome(
            client, network.token, _submit(client, network.token, invoca_call("http://127.0.0.2:9/x.wav"))
        )
        assert call["status"] == "failed"
        assert call["status_reason"].startswith("refusing to fetch from 127.0.0.2")
