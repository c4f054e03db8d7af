"""The SIP/media engine in a process of its own, logging the way production does (JSON lines on stderr).

`python -m tests.media.engine_process SIP_PORT RTP_LOW CACHE_DIR`: prints `{"ready": SIP_PORT}` on stdout once
the engine listens, answers every call, and stops cleanly on SIGTERM. Tests read everything the process
writes (stdout and stderr), which is what an operator's log would hold, sippy's own prints included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from callplane.errors import CallplaneError
from callplane.logging import configure_logging
from callplane.media.engine import EngineConfig, IncomingCall
from callplane.media.sip import SippyCallEngine


async def serve(sip_port: int, rtp_low: int, cache_dir: Path) -> None:
    configure_logging("INFO", "json")
    engine = SippyCallEngine(
        EngineConfig(sip_port=sip_port, rtp_port_range=(rtp_low, rtp_low + 200), cache_dir=cache_dir)
    )
    await engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    events = engine.subscribe()
    print(json.dumps({"ready": sip_port}), flush=True)

    async def answer_every_call() -> None:
        while True:
            event = await events.get()
            if isinstance(event, IncomingCall):
                with contextlib.suppress(CallplaneError):  # the caller gave up first
                    await engine.answer(event.call_id)

    answering = loop.create_task(answer_every_call())
    await stop.wait()
    answering.cancel()
    await engine.stop()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
