"""`callplane sip-front`: Kamailio as the SIP front door of a set of media nodes (docs/voice.md "SIP front door").

The routing is Kamailio's (deploy/kamailio/kamailio.cfg: dispatcher with OPTIONS probing, Record-Route, failover on
503 or silence); this module only writes the dispatcher list for the given nodes and runs `kamailio` in the
foreground with that config, passing SIGINT/SIGTERM on to it.
"""

from __future__ import annotations

import ipaddress
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "kamailio.cfg"
DISPATCHER_SET = 1  # ds_select_dst("1", ...) in the config


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """`host:port` (an IPv4 address or a host name; IPv6 in brackets)."""
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {text!r}")
    host = host.removeprefix("[").removesuffix("]")
    if any(character.isspace() for character in host) or any(character in host for character in ";,<>\"'"):
        raise ValueError(f"not a host: {host!r}")
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return Address(host, int(port))


def dispatcher_list(nodes: Sequence[Address]) -> str:
    """Kamailio's dispatcher list: `setid destination flags priority attributes`, one media node a line."""
    if not nodes:
        raise ValueError("at least one media node")
    lines = ["# written by `callplane sip-front`: the media nodes behind the front door"]
    lines += [f"{DISPATCHER_SET} sip:{node} 0 0 duid=node{index}" for index, node in enumerate(nodes, 1)]
    return "\n".join(lines) + "\n"


@dataclass
class FrontDoor:
    listen: Address
    nodes: Sequence[Address]
    work_dir: Path
    probe_seconds: int = 1
    config: Path | None = None
    children: int = 2
    timeout_ms: int = 3000  # a probe, or an INVITE not answered at all (no 100 Trying), fails after this
    kamailio: str = "kamailio"

    def prepare(self) -> list[str]:
        """Write the dispatcher list; the command line that runs Kamailio in the foreground, logging to stderr."""
        if self.probe_seconds < 1:
            raise ValueError("the probe interval is at least 1 second")
        if self.timeout_ms < 100:
            raise ValueError("the timeout is at least 100 ms")
        config = (self.config or DEFAULT_CONFIG).resolve()
        if not config.is_file():
            raise FileNotFoundError(f"no Kamailio config at {config}")
        binary = shutil.which(self.kamailio)
        if binary is None:
            raise FileNotFoundError("kamailio is not installed (Debian: apt-get install kamailio)")
        work = self.work_dir.resolve()
        (work / "run").mkdir(parents=True, exist_ok=True)
        listing = work / "dispatcher.list"
        listing.write_text(dispatcher_list(self.nodes))
        return [
            binary, "-f", str(config), "-DD", "-E", "-m", "64", "-M", "8",
            "-l", f"udp:{self.listen}", "-Y", str(work / "run"), "-P", str(work / "run" / "kamailio.pid"),
            "-w", str(work), "-A", f'DISPATCHER_LIST="{listing}"', "-A", f"PROBE_INTERVAL={self.probe_seconds}",
            "-A", f"CHILDREN={self.children}", "-A", f"FR_TIMER_MS={self.timeout_ms}",
        ]  # fmt: skip

    def run(self) -> int:
        """Run Kamailio until it exits; SIGINT/SIGTERM here stop it. Returns its exit status."""
        process = subprocess.Popen(self.prepare())  # noqa: S603 - our own argument list, no shell

        def forward(signum: int, _frame: FrameType | None) -> None:
            process.send_signal(signum)

        previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            return process.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
