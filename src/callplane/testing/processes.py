"""A helper server the tests start as a real process (moto's S3 server, Azurite): started, waited for, stopped."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def serving_process(
    args: list[str], log_path: Path, ready: Callable[[], bool], name: str, timeout_s: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` (output to `log_path`) until `ready()` says it serves; terminated on exit. A process that exits or
    is not ready within `timeout_s` is a RuntimeError naming its log."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=log)  # noqa: S603 - our own command line
        try:
            deadline = time.monotonic() + timeout_s
            while not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start (see {log_path})")
                time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # deaf to SIGTERM (node seen so): nothing may outlive the tests
                process.kill()
                process.wait()
