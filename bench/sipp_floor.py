"""The sipp pieces the voice, media and relay benchmarks share, and their floor: sipp calling sipp, no engine.

The floor's callee answers and echoes every RTP packet back (`-rtp_echo`: a receive and a send per packet, the
least any media server does); the benchmark's own caller scenario places the same calls against it.
"""

from __future__ import annotations

import contextlib
import re
import struct
from pathlib import Path

import numpy as np

from callplane.media import g711
from callplane.media.g711 import PayloadType


def tone_pcap(path: Path, seconds: float) -> None:
    """PCMA 20 ms packets, one SSRC, continuous seq/ts (sipp replays it byte for byte)."""
    t = np.arange(int(8000 * seconds)) / 8000.0
    samples = (6000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for index in range(len(samples) // 160):
        payload = g711.encode(samples[index * 160 : (index + 1) * 160], PayloadType.PCMA)
        rtp = struct.pack("!BBHII", 0x80, 8, index, index * 160, 0x1234) + payload
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        micros = index * 20_000
        out.append(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def sipp_counter(output: str, name: str) -> int:
    matches = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(matches[-1]) if matches else -1


_CALLER_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench caller">
  <send retrans="500"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[local_ip_type] [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000

    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
"""
_CALLER_BYE = """  <send retrans="500"><![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200" crlf="true"/>
"""
_ANSWER_BYE = """  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
"""


def caller_scenario(middle: str, *, hangs_up: bool = True) -> str:
    """A sipp caller: INVITE offering PCMA and telephone-event, ACK the 200, then `middle` (the call's media and
    pauses, sipp XML), then send BYE; or, not `hangs_up`, wait for the far end's BYE and answer it."""
    end = _CALLER_BYE if hangs_up else '  <recv request="BYE" timeout="900000"/>\n' + _ANSWER_BYE
    return _CALLER_HEAD + middle + end + "</scenario>\n"


FLOOR_CALLEE = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="voice bench floor callee">
  <recv request="INVITE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000

    ]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
"""
    + _ANSWER_BYE
    + "</scenario>\n"
)


def sipp_current_calls(stat_file: Path) -> int:
    """The callee's CurrentCall from its -trace_stat CSV (one line a second)."""
    try:
        lines = stat_file.read_text().splitlines()
    except OSError:
        return 0
    if len(lines) < 2:
        return 0
    header, last = lines[0].split(";"), lines[-1].split(";")
    with contextlib.suppress(ValueError, IndexError):
        return int(last[header.index("CurrentCall")])
    return 0
