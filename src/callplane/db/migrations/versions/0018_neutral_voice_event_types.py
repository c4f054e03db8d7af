"""neutral voice event types on deliveries

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 06:40:00

A voice webhook's delivery row records callplane's own event type (`core.voice.events.VoiceEventType`,
`voice.call.finished`) instead of Infobip's name (`CALL_FINISHED`), which stays in the delivered body and in the
subscriptions (the names their subscribers gave). Rows written before are renamed so one vocabulary answers
every query. The table below is frozen here on purpose: a migration must not follow later renames.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMED = {
    "CALL_RECEIVED": "voice.call.received",
    "CALL_RINGING": "voice.call.ringing",
    "CALL_PRE_ESTABLISHED": "voice.call.early_media",
    "CALL_ESTABLISHED": "voice.call.established",
    "CALL_FINISHED": "voice.call.finished",
    "CALL_FAILED": "voice.call.failed",
    "CALL_RECORDING_READY": "voice.call.recording_ready",
    "SAY_FINISHED": "voice.say.finished",
    "PLAY_FINISHED": "voice.play.finished",
    "DTMF_CAPTURED": "voice.digits.captured",
    "ERROR": "voice.action.failed",
    "DIALOG_CREATED": "voice.dialog.created",
    "DIALOG_ESTABLISHED": "voice.dialog.established",
    "DIALOG_FINISHED": "voice.dialog.finished",
    "DIALOG_FAILED": "voice.dialog.failed",
    "DIALOG_RECORDING_READY": "voice.dialog.recording_ready",
    "DIALOG_RECORDING_FAILED": "voice.dialog.recording_failed",
    "DIALOG_COMPOSITION_FINISHED": "voice.dialog.composition_finished",
    "DIALOG_COMPOSITION_FAILED": "voice.dialog.composition_failed",
}

# Only webhook rows: voice events were never callbacks, and account-wide events are lowercase (`call.processed`).
_deliveries = sa.table("deliveries", sa.column("kind", sa.String), sa.column("event_type", sa.String))


def _rename(names: dict[str, str]) -> None:
    for old, new in names.items():
        op.execute(
            _deliveries.update()
            .where(_deliveries.c.kind == "webhook", _deliveries.c.event_type == old)
            .values(event_type=new)
        )


def upgrade() -> None:
    _rename(RENAMED)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMED.items()})
