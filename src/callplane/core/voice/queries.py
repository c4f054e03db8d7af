"""Reading voice history: calls, dialogs and their recordings, for any process (no engine needed).

Functions take the caller's session and never commit; the ones that mark rows deleted leave removing the files
to the caller, after its commit.
"""

from __future__ import annotations

RECORDINGS_DIRECTORY = "voice-recordings"
