"""The pure parts of the media plane against known values: G.711, RTP, RFC 4733, SDP, jitter buffer,
players, DTMF collection, the shared clock's isolation of a failing call, decoding and TTS caching."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import http.server
import random
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvloop

from callplane.media import g711, rtp, sdp
from callplane.media.audio import (
    HANGUP_MARK,
    AudioLibrary,
    AudioUnavailable,
    CollectionEnd,
    PcmPlayer,
    RecordingChannels,
    SpeechSynthesizer,
    WavRecorder,
    collect_digits,
    read_wav,
    write_wav,
)
from callplane.media.channel import MediaChannel, in_band_dtmf
from callplane.media.clock import MediaClock
from callplane.media.g711 import PayloadType
from callplane.media.jitter import FRAME_SAMPLES, JitterBuffer
from callplane.testing.sipp import dominant_frequency, tone

# ---- G.711 ---------------------------------------------------------------------------------------

# (code, linear) pairs of the reference g711.c, as CPython's audioop decodes them.
MULAW_KNOWN = [
    (0xFF, 0),
    (0x7F, 0),
    (0x00, -32124),
    (0x80, 32124),
    (0xF0, 120),
    (0x70, -120),
    (0xEF, 132),
    (0x8F, 16764),
]
ALAW_KNOWN = [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0x80, 5504), (0xFF, 848), (0x8F, 6784)]
# (linear, µ-law, A-law) as audioop.lin2ulaw / lin2alaw encode them.
ENCODE_KNOWN = [(0, 0xFF, 0xD5), (-1, 0x7E, 0x55), (100, 0xF2, 0xD3), (-100, 0x72, 0x53), (1000, 0xCE, 0xFA),
                (-1000, 0x4E, 0x7A), (5000, 0xAB, 0x86), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A)]  # fmt: skip
# SHA-256 of the four tables, taken when they matched audioop bit for bit over all 65 536 samples
# (CPython 3.11; audioop itself is gone in 3.13, so the digests are the golden fixture).
TABLE_DIGESTS = {
    "LINEAR_TO_MULAW": "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a",
    "LINEAR_TO_ALAW": "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b",
    "MULAW_TO_LINEAR": "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827",
    "ALAW_TO_LINEAR": "e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174",
}


@pytest.mark.parametrize(("code", "linear"), MULAW_KNOWN)
def test_mulaw_decodes_known_codes(code: int, linear: int) -> None:
    assert int(g711.MULAW_TO_LINEAR[code]) == linear


@pytest.mark.parametrize(("code", "linear"), ALAW_KNOWN)
def test_alaw_decodes_known_codes(code: int, linear: int) -> None:
    assert int(g711.ALAW_TO_LINEAR[code]) == linear


@pytest.mark.parametrize(("linear", "mulaw", "alaw"), ENCODE_KNOWN)
def test_encoder_matches_the_reference_on_known_samples(linear: int, mulaw: int, alaw: int) -> None:
    sample = np.array([linear], dtype=np.int16)
    assert g711.encode(sample, PayloadType.PCMU) == bytes([mulaw])
    assert g711.encode(sample, PayloadType.PCMA) == bytes([alaw])


@pytest.mark.parametrize("name", sorted(TABLE_DIGESTS))
def test_tables_are_bit_exact_with_the_reference(name: str) -> None:
    table = getattr(g711, name)
    data = table.astype("<i2").tobytes() if table.dtype == np.int16 else table.tobytes()
    assert hashlib.sha256(data).hexdigest() == TABLE_DIGESTS[name]


def test_silence_encodes_to_the_idle_codes() -> None:
    zeros = np.zeros(4, dtype=np.int16)
    assert g711.encode(zeros, PayloadType.PCMU) == b"\xff" * 4
    assert g711.encode(zeros, PayloadType.PCMA) == b"\xd5" * 4


@pytest.mark.parametrize("payload_type", list(PayloadType))
def test_every_code_survives_decode_then_encode(payload_type: PayloadType) -> None:
    codes = bytes(range(256))
    again = g711.encode(g711.decode(codes, payload_type), payload_type)
    differing = [(a, b) for a, b in zip(codes, again, strict=True) if a != b]
    # µ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
    assert differing == ([(0x7F, 0xFF)] if payload_type is PayloadType.PCMU else [])


@pytest.mark.parametrize("payload_type", list(PayloadType))
def test_round_trip_error_stays_within_the_quantisation_step(payload_type: PayloadType) -> None:
    signal = np.linspace(-32000, 32000, 20001).astype(np.int16)
    back = g711.decode(g711.encode(signal, payload_type), payload_type).astype(np.int32)
    error = np.abs(back - signal.astype(np.int32))
    assert error.max() <= np.maximum(np.abs(signal.astype(np.int32)) // 16, 16).max()
    assert np.all(error <= np.maximum(np.abs(signal.astype(np.int32)) // 16 + 8, 16))


# ---- RTP and RFC 4733 ------------------------------------------------------------------------------


def test_rtp_packet_round_trips_and_reads_csrc_extension_and_padding() -> None:
    packet = rtp.RtpPacket(
        payload_type=8, sequence_number=65535, timestamp=0xFFFFFFF0, ssrc=0xDEADBEEF, payload=b"x" * 160, marker=True
    )
    assert rtp.RtpPacket.parse(bytes(packet)) == packet
    # 1 CSRC, a 1-word header extension and 3 bytes of padding around a 2-byte payload.
    raw = (
        bytes([0xB1, 0x00])
        + b"\x00\x01"
        + b"\x00" * 8
        + b"CSRC"
        + b"\xbe\xde\x00\x01"
        + b"EXT!"
        + b"ok"
        + b"\x00\x00\x03"
    )
    parsed = rtp.RtpPacket.parse(raw)
    assert (parsed.payload_type, parsed.payload) == (0, b"ok")


@pytest.mark.parametrize("junk", [b"", b"\x80\x00", b"\x40" + b"\x00" * 20, bytes([0x8F]) + b"\x00" * 20])
def test_malformed_rtp_is_refused(junk: bytes) -> None:
    with pytest.raises(rtp.MalformedPacket):
        rtp.RtpPacket.parse(junk)


def test_telephone_event_matches_the_sipp_pcap_bytes() -> None:
    # Last packet of /usr/share/sip-tester/dtmf_2833_1.pcap: digit 1, end bit, volume 10, duration 2240.
    event = rtp.TelephoneEvent.parse(bytes.fromhex("018a08c0"))
    assert (event.digit, event.end, event.volume, event.duration) == ("1", True, 10, 2240)
    assert bytes(event) == bytes.fromhex("018a08c0")
    assert rtp.TelephoneEvent(event=11, end=False, volume=10, duration=160).digit == "#"


def test_rtcp_sender_report_parses_as_one_sr() -> None:
    report = rtp.sender_report(ssrc=1, ntp_seconds=3.9e9, rtp_timestamp=160, packets_sent=5, octets_sent=800)
    assert rtp.is_rtcp(report)
    assert rtp.rtcp_packet_types(report + rtp.rtcp_bye(1)) == [rtp.RTCP_SR, rtp.RTCP_BYE]


# ---- SDP ---------------------------------------------------------------------------------------------

SIPP_OFFER = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n"
)


def test_answer_takes_the_offerers_first_common_codec_and_its_event_pt() -> None:
    offer = sdp.parse(SIPP_OFFER)
    negotiated = sdp.negotiate_answer(offer, preferred=(PayloadType.PCMU, PayloadType.PCMA))
    assert negotiated == sdp.Negotiated(PayloadType.PCMA, 101, "127.0.0.1", 6000, "sendrecv")
    answer = sdp.build(
        address="127.0.0.1", port=20000, codecs=(negotiated.codec,), telephone_event_pt=101, session_id=7
    )
    reparsed = sdp.parse(answer)
    assert reparsed.payload_types == [8, 101] and reparsed.port == 20000 and reparsed.telephone_event_pt == 101


def test_media_level_connection_and_direction_win() -> None:
    text = SIPP_OFFER.replace(
        "m=audio 6000 RTP/AVP 8 101\r\n", "m=audio 6000 RTP/AVP 0\r\nc=IN IP4 10.0.0.9\r\na=sendonly\r\n"
    )
    offer = sdp.parse(text)
    assert (offer.address, offer.direction, offer.telephone_event_pt) == ("10.0.0.9", "sendonly", None)
    assert "a=recvonly" in sdp.build(
        address="127.0.0.1", port=1, codecs=(PayloadType.PCMU,), session_id=1, direction="sendonly"
    )


@pytest.mark.parametrize(
    "broken",
    [
        "",
        "hello world",
        "v=0\r\nc=IN IP4 127.0.0.1\r\n",  # no audio
        SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 not-an-ip"),
        SIPP_OFFER.replace("m=audio 6000", "m=audio banana"),
        SIPP_OFFER.replace("RTP/AVP", "RTP/SAVP"),
        SIPP_OFFER.replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:eight"),
    ],
)
def test_broken_sdp_is_refused(broken: str) -> None:
    with pytest.raises(sdp.SdpError):
        sdp.parse(broken)


def test_offer_without_a_g711_codec_cannot_be_answered() -> None:
    offer = sdp.parse(SIPP_OFFER.replace("RTP/AVP 8 101", "RTP/AVP 18 101").replace("8 PCMA", "18 G729"))
    with pytest.raises(sdp.SdpError):
        sdp.negotiate_answer(offer, preferred=(PayloadType.PCMU, PayloadType.PCMA))


# ---- jitter buffer -----------------------------------------------------------------------------------


def _frames(count: int, size: int = FRAME_SAMPLES) -> list[np.ndarray]:
    return [np.full(size, index + 1, dtype=np.int16) for index in range(count)]


def test_jitter_buffer_reorders_and_fills_gaps_with_nothing() -> None:
    buffer = JitterBuffer(prefetch_frames=2)
    frames = _frames(6)
    for index in (1, 0, 3, 2, 5):  # reordered; frame 4 lost
        buffer.push(ssrc=1, timestamp=1000 + index * FRAME_SAMPLES, samples=frames[index])
    out = [buffer.pop() for _ in range(6)]
    assert [None if frame is None else int(frame[0]) for frame in out] == [1, 2, 3, 4, None, 6]


def test_jitter_buffer_repacketises_30_ms_packets_into_20_ms_frames() -> None:
    buffer = JitterBuffer(prefetch_frames=1)
    samples = np.arange(240 * 4, dtype=np.int16)
    for index in range(4):
        buffer.push(
            ssrc=9, timestamp=0xFFFFFF00 + index * 240, samples=samples[index * 240 : (index + 1) * 240]
        )  # wraps
    played = np.concatenate([frame for frame in (buffer.pop() for _ in range(6)) if frame is not None])
    assert np.array_equal(played, samples)


def test_jitter_buffer_drops_late_packets_and_restarts_on_a_new_ssrc() -> None:
    buffer = JitterBuffer(prefetch_frames=1)
    buffer.push(ssrc=1, timestamp=0, samples=_frames(1)[0])
    assert buffer.pop() is not None
    buffer.push(ssrc=1, timestamp=0, samples=_frames(1)[0])
    assert buffer.late_packets == 1
    buffer.push(ssrc=2, timestamp=777, samples=_frames(2)[1])
    frame = buffer.pop()
    assert frame is not None and int(frame[0]) == 2


# ---- players, recorder, DTMF collection --------------------------------------------------------------


def test_player_applies_offset_and_timeout_to_the_first_loop_only() -> None:
    samples = np.arange(800, dtype=np.int16)  # 100 ms
    player = PcmPlayer(samples, loop_count=2, offset_ms=40, timeout_ms=40)
    frames = []
    while (frame := player.read_frame()) is not None:
        frames.append(frame)
    played = np.concatenate(frames)
    assert np.array_equal(played[:320], samples[320:640])
    assert np.array_equal(played[320:1120], samples)
    assert len(played) == 1120  # the last loop's partial frame is padded to 20 ms


def test_stereo_recorder_keeps_each_direction_on_its_own_channel(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "r.wav", RecordingChannels.STEREO)
    recorder.write(np.full(FRAME_SAMPLES, 100, dtype=np.int16), None)
    recorder.write(None, np.full(FRAME_SAMPLES, -200, dtype=np.int16))
    recorder.close()
    samples, channels = read_wav(tmp_path / "r.wav")
    assert channels == 2 and recorder.duration_ms == 40
    assert set(samples[0:320:2]) == {100} and set(samples[1:320:2]) == {0}
    assert set(samples[320::2]) == {0} and set(samples[321::2]) == {-200}


@pytest.mark.parametrize(
    ("typed", "kwargs", "expected"),
    [
        ("12#", {"max_length": 5, "terminator": "#"}, ("12", CollectionEnd.TERMINATOR)),
        ("12345", {"max_length": 3}, ("123", CollectionEnd.MAX_LENGTH)),
        ("9", {"max_length": 3, "inter_digit_timeout_s": 0.05}, ("9", CollectionEnd.TIMEOUT)),
        ("", {"max_length": 3, "first_digit_timeout_s": 0.05}, ("", CollectionEnd.TIMEOUT)),
        ("4" + HANGUP_MARK, {"max_length": 3}, ("4", CollectionEnd.HANGUP)),
    ],
)
def test_dtmf_collection_ends_the_right_way(
    typed: str, kwargs: dict[str, object], expected: tuple[str, CollectionEnd]
) -> None:
    async def collect() -> tuple[str, CollectionEnd]:
        digits: asyncio.Queue[str] = asyncio.Queue()
        for digit in typed:
            digits.put_nowait(digit)
        result = await collect_digits(digits, **kwargs)  # type: ignore[arg-type]
        return result.digits, result.ended_by

    assert asyncio.run(collect()) == expected


# ---- the clock isolates a failing call ---------------------------------------------------------------


class _Counting:
    def __init__(self, *, explode_at: int | None = None) -> None:
        self.ticks = 0
        self.explode_at = explode_at
        self.failed: BaseException | None = None

    def pull_inbound(self) -> None:
        pass

    def push_outbound(self) -> None:
        self.ticks += 1
        if self.ticks == self.explode_at:
            raise RuntimeError("broken source")

    def fail(self, error: BaseException) -> None:
        self.failed = error


def test_a_call_that_raises_is_dropped_and_the_others_keep_ticking(caplog: pytest.LogCaptureFixture) -> None:
    clock = MediaClock()
    healthy, broken = _Counting(), _Counting(explode_at=3)
    clock.add(healthy)
    clock.add(broken)
    for _ in range(10):
        clock.tick()
    assert healthy.ticks == 10 and broken.ticks == 3
    assert isinstance(broken.failed, RuntimeError) and clock.channel_count == 1
    assert clock.stats.failed_channels == 1


def test_a_channel_closed_while_binding_leaves_no_socket_open() -> None:
    """A call can end while its ports are being bound (the caller's CANCEL): the sockets bound afterwards are
    closed at once, not left to the collector."""

    async def scenario() -> MediaChannel:
        channel = MediaChannel(clock=MediaClock(), on_digit=lambda digit: None)
        channel.close()  # the call ended first
        with pytest.raises(OSError, match="closed while its ports were bound"):
            await channel.open("127.0.0.1", (40000, 40998))
        return channel

    channel = asyncio.run(scenario())
    transports = [channel._transport, channel._rtcp_transport]
    assert all(transport is not None and transport.is_closing() for transport in transports)


def test_a_pair_whose_rtcp_port_is_taken_is_refused_without_leaving_a_transport_to_the_collector() -> None:
    """uvloop leaves the transport of a failed bind unclosed: the pair is bound as plain sockets first."""
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(100):  # an odd port taken, the even one below it free
        with contextlib.suppress(OSError):
            squatter.bind(("127.0.0.1", random.randrange(41001, 49999, 2)))
            break
    rtp_port = squatter.getsockname()[1] - 1

    async def scenario() -> None:
        channel = MediaChannel(clock=MediaClock(), on_digit=lambda digit: None)
        with pytest.raises(OSError, match="no free RTP port pair"):
            await channel.open("127.0.0.1", (rtp_port, rtp_port + 2))

    with squatter:
        uvloop.run(scenario())
    gc.collect()  # an unclosed transport would be reported here (warnings are errors)


# ---- decoding, URLs and TTS caching -------------------------------------------------------------------


@pytest.fixture
def mp3_and_wav(tmp_path: Path) -> tuple[Path, Path]:
    wav = tmp_path / "tone44k.wav"
    mp3 = tmp_path / "tone.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=1",
            "-ac",
            "2",
            str(wav),
        ],
        check=True,
    )
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-b:a", "64k", str(mp3)], check=True)
    return wav, mp3


def test_files_are_decoded_to_8k_mono_once(tmp_path: Path, mp3_and_wav: tuple[Path, Path]) -> None:
    async def decode() -> None:
        library = AudioLibrary(tmp_path / "cache")
        for source in mp3_and_wav:
            samples = await library.file(source)
            assert abs(len(samples) - 8000) < 400  # MP3 adds encoder padding
            assert abs(dominant_frequency(samples[1000:5000]) - 440) < 5
        again = await library.file(mp3_and_wav[1])
        assert again is await library.file(mp3_and_wav[1])
        with pytest.raises(AudioUnavailable):
            await library.file(tmp_path / "missing.wav")
        (tmp_path / "junk.wav").write_bytes(b"RIFF nonsense")
        with pytest.raises(AudioUnavailable):
            await library.file(tmp_path / "junk.wav")

    asyncio.run(decode())


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []
    root = tmp_path / "www"
    root.mkdir()
    write_wav(root / "prompt.wav", tone(600, 0.5))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_url_audio_is_downloaded_once_and_cached(tmp_path: Path, file_server: tuple[str, list[str]]) -> None:
    base_url, requests = file_server

    async def fetch() -> None:
        library = AudioLibrary(tmp_path / "cache")
        first = await library.url(f"{base_url}/prompt.wav")
        assert len(first) == 4000 and abs(dominant_frequency(first) - 600) < 5
        await asyncio.gather(*(library.url(f"{base_url}/prompt.wav") for _ in range(3)))
        assert requests == ["/prompt.wav"]
        with pytest.raises(AudioUnavailable):
            await library.url(f"{base_url}/missing.wav")
        fresh = AudioLibrary(tmp_path / "cache")  # a restart reuses the downloaded file
        await fresh.url(f"{base_url}/prompt.wav")
        assert requests == ["/prompt.wav", "/missing.wav"]

    asyncio.run(fetch())


def test_speech_is_rendered_once_per_text_voice_and_rate(media_cache: Path) -> None:
    async def speak() -> None:
        library = AudioLibrary(media_cache / "unit-audio")
        synthesizer = SpeechSynthesizer(media_cache / "unit-tts", library)
        first = await asyncio.gather(*(synthesizer.speak("Your code is one two three.") for _ in range(3)))
        assert synthesizer.renders == 1
        assert all(samples is first[0] for samples in first)
        assert len(first[0]) > 8000 and np.abs(first[0]).max() > 3000
        await synthesizer.speak("Your code is one two three.", words_per_minute=220)
        assert synthesizer.renders == 2
        restarted = SpeechSynthesizer(media_cache / "unit-tts", AudioLibrary(media_cache / "unit-audio"))
        await restarted.speak("Your code is one two three.")
        assert restarted.renders == 0
        with pytest.raises(AudioUnavailable):
            await synthesizer.speak("hi", voice="en; rm -rf /")

    asyncio.run(speak())


def test_in_band_dtmf_fallback_carries_both_tones_of_the_key() -> None:
    samples = np.concatenate(in_band_dtmf("5", 5))
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    frequencies = np.fft.rfftfreq(len(samples), 1 / 8000)
    strongest = sorted(frequencies[np.argsort(spectrum)[-2:]])
    assert abs(strongest[0] - 770) < 10 and abs(strongest[1] - 1336) < 10
