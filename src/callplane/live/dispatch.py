"""The dispatch point between a `VoiceService` command and the node that carries the call.

A `VoiceService` method marked `@relayed` runs here when this process carries the call (the in-process path: one
dictionary lookup, no table), and otherwise goes to the service's `relay` (live/relay.py), which sends it
to the owning media node and answers with that node's outcome. A command the relay runs on a node executes with
`running_relayed` set, so the node never relays it onward: it runs it and answers with whatever it raises.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

P = ParamSpec("P")
R = TypeVar("R")

# Names of the VoiceService methods a relay may run on another node (what a node accepts from the table).
RELAYED: set[str] = set()

running_relayed: ContextVar[bool] = ContextVar("running_relayed", default=False)


class Forwarder(Protocol):
    async def forward(
        self, voice: Any, command: str, arguments: dict[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run `command` where the call lives: `local()` when that is here (or nowhere), else on its node."""


class Relayable(Protocol):
    relay: Forwarder | None

    def carries(self, arguments: Mapping[str, Any]) -> bool:
        """Whether this process carries the call the arguments name."""


S = TypeVar("S", bound=Relayable)


def relayed(method: Callable[Concatenate[S, P], Awaitable[R]]) -> Callable[Concatenate[S, P], Awaitable[R]]:
    """Mark a keyword-only VoiceService command as one that runs on the node carrying its call."""
    RELAYED.add(method.__name__)

    @functools.wraps(method)
    async def dispatch(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        relay = self.relay
        if relay is None or args or running_relayed.get() or self.carries(kwargs):
            return await method(self, *args, **kwargs)
        outcome = await relay.forward(self, method.__name__, dict(kwargs), lambda: method(self, *args, **kwargs))
        return cast(R, outcome)

    return cast(Callable[Concatenate[S, P], Awaitable[R]], dispatch)
