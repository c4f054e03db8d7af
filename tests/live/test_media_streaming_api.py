"""Media streaming through the Calls API on the in-memory engine, with examples/media_stream_server.py as the real
WebSocket server on loopback, on SQLite and PostgreSQL: media-stream configurations (CRUD, the target policy, no
credentials ever returned), start/stop-media-stream on a call (the preamble, the far end's audio as 48 kHz frames,
BASIC credentials on the handshake), replaceMedia (what the server returns is what the call's peers get), the
MEDIA_STREAM_* events, and a server that cannot be reached. Bodies go through the official client's models."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from infobip_api_client.models.basic_security_config import BasicSecurityConfig
from infobip_api_client.models.calls_media_stream import CallsMediaStream
from infobip_api_client.models.calls_media_stream_audio_properties import CallsMediaStreamAudioProperties
from infobip_api_client.models.calls_media_stream_config_page import CallsMediaStreamConfigPage
from infobip_api_client.models.calls_media_stream_config_response import CallsMediaStreamConfigResponse
from infobip_api_client.models.calls_media_streaming_config_request import CallsMediaStreamingConfigRequest
from infobip_api_client.models.calls_request_media_stream_config_type import CallsRequestMediaStreamConfigType
from infobip_api_client.models.calls_start_media_stream_request import CallsStartMediaStreamRequest
from infobip_api_client.models.calls_websocket_endpoint_config_request import CallsWebsocketEndpointConfigRequest
from infobip_api_client.models.security_config_type import SecurityConfigType

from callplane.core.voice.schemas import MediaStreamRequest
from callplane.live.relay import decode, encode
from callplane.media.streaming import MediaStream
from callplane.testing.engine import FarEnd
from callplane.testing.sipp import tone
from tests.live.support import CallsApp, LiveServer, Receiver, eventually
from tests.media.test_media_streaming import example_server, peak

pytestmark = pytest.mark.xdist_group("live-fake-engine")


class ServerThread:
    """The example server on its own loop in a thread (the tests are synchronous)."""

    def __init__(self, mode: str, **credentials: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = example_server().MediaStreamServer(mode, **credentials)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="media-stream-server")

    def __enter__(self) -> Any:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def sink() -> Iterator[Any]:
    with ServerThread("sink", username="streamer", password="s3cret") as server:
        yield server


def _streaming_config(app: CallsApp, url: str, **security: str) -> str:
    body = CallsMediaStreamingConfigRequest(
        type=CallsRequestMediaStreamConfigType.MEDIA_STREAMING,
        name=f"stream-{secrets.token_hex(3)}",
        url=url,
        security_config=BasicSecurityConfig(type=SecurityConfigType.BASIC, **security) if security else None,
    ).to_dict()
    created = app.http.post("/calls/1/media-stream-configs", json=body)
    assert created.status_code == 200, created.text
    config_id: str = created.json()["id"]
    return config_id


def _answered(live: LiveServer, app: CallsApp, receiver: Receiver) -> tuple[str, str]:
    callee = f"stream-{secrets.token_hex(3)}"
    live.fake.route(callee, FarEnd(answer_after_s=0.05))
    call_id = app.create_call(callee)
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    [engine_call] = eventually(lambda: live.fake.calls_to(callee), "the call reached the engine")
    return call_id, engine_call.call_id


def _start(app: CallsApp, call_id: str, config_id: str, *, replace: bool = False) -> int:
    body = CallsStartMediaStreamRequest(
        media_stream=CallsMediaStream(
            audio_properties=CallsMediaStreamAudioProperties(media_stream_config_id=config_id, replace_media=replace)
        )
    ).to_dict()
    started = app.http.post(f"/calls/1/calls/{call_id}/start-media-stream", json=body)
    if started.status_code == 200:
        assert started.json() == {"status": "PENDING"}
    return started.status_code


def test_media_stream_configurations_are_stored_listed_replaced_and_deleted_without_their_password(
    app: CallsApp,
) -> None:
    config_id = _streaming_config(app, "wss://127.0.0.1:3002/stream", username="u", password="p@ss")
    got = app.http.get(f"/calls/1/media-stream-configs/{config_id}")
    assert got.status_code == 200
    assert "p@ss" not in got.text and "securityConfig" not in got.json()
    config = CallsMediaStreamConfigResponse.from_dict(got.json())
    assert config is not None and config.id == config_id and config.url == "wss://127.0.0.1:3002/stream"
    assert got.json()["type"] == "MEDIA_STREAMING"
    listed = app.http.get("/calls/1/media-stream-configs", params={"page": 0, "size": 10})
    page = CallsMediaStreamConfigPage.from_dict(listed.json())
    assert page is not None and page.paging is not None and page.paging.total_results == 1
    assert page.results is not None and [item.id for item in page.results] == [config_id]
    replaced = app.http.put(
        f"/calls/1/media-stream-configs/{config_id}",
        json=CallsWebsocketEndpointConfigRequest(
            type=CallsRequestMediaStreamConfigType.WEBSOCKET_ENDPOINT,
            name="wide",
            url="ws://127.0.0.1:3003",
            sample_rate="16000",
        ).to_dict(),
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json() == {
        "id": config_id,
        "type": "WEBSOCKET_ENDPOINT",
        "name": "wide",
        "url": "ws://127.0.0.1:3003",
        "sampleRate": "16000",
    }
    assert app.http.delete(f"/calls/1/media-stream-configs/{config_id}").status_code == 200
    assert app.http.get(f"/calls/1/media-stream-configs/{config_id}").status_code == 404
    assert app.http.delete(f"/calls/1/media-stream-configs/{config_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"type": "MEDIA_STREAMING", "name": "x", "url": "https://127.0.0.1/"}, None, id="not-ws"),
        pytest.param({"type": "MEDIA_STREAMING", "name": "x", "url": "ws://10.1.2.3/"}, "url", id="private-address"),
        pytest.param({"type": "MEDIA_STREAMING", "name": "x", "url": "ws://169.254.169.254/"}, "url", id="metadata"),
        pytest.param(
            {"type": "MEDIA_STREAMING", "name": "x", "url": "ws://127.0.0.1/", "securityConfig": {"type": "HMAC"}},
            "securityConfig",
            id="hmac",
        ),
        pytest.param(
            {"type": "WEBSOCKET_ENDPOINT", "name": "x", "url": "ws://127.0.0.1/", "sampleRate": "44100"},
            None,
            id="sample-rate",
        ),
    ],
)
def test_configurations_the_platform_cannot_stream_to_are_refused(
    app: CallsApp, body: dict[str, Any], field: str | None
) -> None:
    refused = app.http.post("/calls/1/media-stream-configs", json=body)
    assert refused.status_code == 400, refused.text
    if field is not None:
        assert field in refused.json()["requestError"]["serviceException"]["validationErrors"]


def test_a_calls_audio_streams_as_48_khz_frames_after_the_preamble_until_stopped(
    live: LiveServer, app: CallsApp, receiver: Receiver, sink: Any
) -> None:
    config_id = _streaming_config(app, sink.url, username="streamer", password="s3cret")
    call_id, engine_id = _answered(live, app, receiver)
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-media-stream").status_code == 400  # nothing streams
    assert _start(app, call_id, config_id) == 200
    started = receiver.wait_type(call_id, "MEDIA_STREAM_STARTED")
    assert started["properties"] == {"configId": config_id}
    assert _start(app, call_id, config_id) == 400  # one stream per call
    [session] = sink.sessions
    assert session.preamble == {"callId": call_id, "sampleRate": 48000, "packetizationTime": 20, "customData": {}}
    assert session.authorization is not None and session.authorization.startswith("Basic ")
    live.fake.far_end(engine_id).send_audio(tone(1000.0, 1.0))
    eventually(lambda: len(session.audio) >= 50 * 1920, "a second of audio reached the server")
    assert all(size % 1920 == 0 for size in session.message_sizes)
    assert abs(peak(session.samples(), 48000) - 1000.0) < 10
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-media-stream").status_code == 200
    finished = receiver.wait_type(call_id, "MEDIA_STREAM_FINISHED")
    assert finished["properties"] == {"configId": config_id, "reason": "Stopped by request"}
    eventually(lambda: not live.fake.calls[engine_id].taps, "the stream's tap comes off")
    eventually(lambda: session.closed, "the connection is closed")
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    receiver.single_terminal(call_id)


def test_replaced_media_is_what_the_call_passes_on_and_the_calls_end_finishes_the_stream(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    with ServerThread("echo") as echo:
        config_id = _streaming_config(app, echo.url)
        call_id, engine_id = _answered(live, app, receiver)
        assert _start(app, call_id, config_id, replace=True) == 200
        receiver.wait_type(call_id, "MEDIA_STREAM_STARTED")
        eventually(lambda: live.fake.calls[engine_id].inbound_replacement is not None, "the replacement is on")
        far_end = live.fake.far_end(engine_id)
        far_end.send_audio(tone(1000.0, 0.4))  # 20 frames to the server; peers get silence meanwhile
        stream = live.fake.calls[engine_id].inbound_replacement  # the MediaStream: returned frames wait in it
        assert isinstance(stream, MediaStream)
        eventually(lambda: stream.stats.frames_returned >= 20, "the server's echo came back")
        silence = np.zeros(8000 * 2 // 5, dtype=np.int16)
        far_end.send_audio(silence)  # 20 frames more: the peers get the echoed tone instead
        relayed = live.fake.calls[engine_id].relayed_audio
        first, then = np.concatenate(relayed[:20]), np.concatenate(relayed[20:40])
        assert not first.any()  # nothing had come back yet
        assert abs(peak(then, 8000) - 1000.0) < 10 and np.sqrt(np.mean(then.astype(float) ** 2)) > 1000
        assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
        finished = receiver.wait_type(call_id, "MEDIA_STREAM_FINISHED")
        assert finished["properties"] == {"configId": config_id, "reason": "The call ended"}
        receiver.single_terminal(call_id)


def test_a_server_that_cannot_be_reached_fails_the_stream_and_the_call_goes_on(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    with ServerThread("sink") as closed:
        url = closed.url
    config_id = _streaming_config(app, url)  # its port is closed now
    call_id, engine_id = _answered(live, app, receiver)
    assert _start(app, call_id, config_id) == 200
    failed = receiver.wait_type(call_id, "MEDIA_STREAM_FAILED")
    assert failed["properties"]["configId"] == config_id
    assert "cannot connect" in failed["properties"]["reason"]
    assert "MEDIA_STREAM_STARTED" not in receiver.types(call_id)
    eventually(lambda: not live.fake.calls[engine_id].taps, "the tap comes off")
    assert live.fake.calls[engine_id].live
    assert _start(app, call_id, "no-such-config") == 404
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    receiver.single_terminal(call_id)


def test_the_relay_carries_a_media_stream_request() -> None:
    request = MediaStreamRequest(config_id="cfg-1", replace_media=True)
    assert decode(encode(request)) == request
