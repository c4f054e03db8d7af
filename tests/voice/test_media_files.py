"""The core file store behind /calls/1/files: what a play action resolves a file id to."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from callplane.core.voice import files
from callplane.media.audio import decode_to_pcm, write_wav
from tests.voice.support import database


def test_a_stored_file_resolves_to_playable_audio_of_its_account_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        upload = tmp_path / "upload.wav"
        write_wav(upload, (4000 * np.sin(2 * np.pi * 500 * np.arange(12000) / 8000)).astype(np.int16))
        data_dir = tmp_path / "data"
        async with database(tmp_path) as (sessions, account_id):
            async with sessions() as session, session.begin():
                stored = await files.store_media_file(
                    session=session, account_id=account_id, name="prompt.wav", upload=upload, data_dir=data_dir
                )
            assert (stored.file_format, stored.duration_ms) == ("WAV", 1500)
            async with sessions() as session:
                path = await files.resolve_file_path(
                    session=session, account_id=account_id, file_id=stored.id, data_dir=data_dir
                )
                assert len(decode_to_pcm(path)) == 12000  # what the engine's player will play
                with pytest.raises(files.MediaFileNotFound):
                    await files.resolve_file_path(
                        session=session, account_id="another-account", file_id=stored.id, data_dir=data_dir
                    )
            async with sessions() as session, session.begin():
                with pytest.raises(files.MediaFileTooLarge):
                    await files.store_media_file(
                        session=session,
                        account_id=account_id,
                        name="x",
                        upload=upload,
                        data_dir=data_dir,
                        max_bytes=100,
                    )

    asyncio.run(scenario())
