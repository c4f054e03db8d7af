"""The suite's own scheduling: `xdist_group` must reach pytest-xdist's loadgroup scheduler.

Everything that loads the Whisper model, the fault soaks and the media-node cluster rely on it (one worker each);
when it silently stops working CI still passes, only slower and with the model loaded twice. pytest 9.2 made
`nodeid` a view of `_id`, so pytest-xdist 3.8's tag (a suffix written to `_nodeid`) went nowhere and every group was
ignored from the day the lock took pytest 9.2; this test fails on such a pairing.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("scheduling-check")


def test_a_grouped_test_carries_its_group_to_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        # not a loadgroup worker (`pytest` without -n, or another --dist): there is no scheduler to reach
        assert request.node.nodeid.endswith("test_a_grouped_test_carries_its_group_to_the_scheduler")
        return
    assert request.node.nodeid.endswith("@scheduling-check"), request.node.nodeid
