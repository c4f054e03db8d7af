"""SFTP against a real OpenSSH sshd, and the local drop folder."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import asyncssh
import pytest
from recordings_support import AudioFiles, Sshd

from callplane.core.recordings.errors import (
    AccessDenied,
    HostKeyMismatch,
    InvalidRecordingLocation,
    RecordingNotFound,
    RecordingTooLarge,
    TargetRefused,
)
from callplane.core.recordings.fetch import (
    DropFolder,
    FetchLimits,
    FetchResult,
    SftpAccess,
    fetch_drop_folder,
    fetch_sftp,
    safe_relative_parts,
)
from callplane.core.recordings.targets import TargetPolicy

LOOPBACK = TargetPolicy.from_config(["127.0.0.1/32"])
TRAVERSALS = ["../secret.wav", "a/../../secret.wav", "/etc/passwd", "..", "a\\..\\b.wav", "", "x\0.wav", "./.."]


@pytest.fixture(scope="module")
def sftp_tree(sshd: Sshd, audio: AudioFiles) -> Path:
    """base/2024/06/call-1.wav, a secret next to base, and a symlink inside base that points at it."""
    base = sshd.root / "recordings"
    (base / "2024" / "06").mkdir(parents=True)
    (base / "2024" / "06" / "call-1.wav").write_bytes(audio.stereo_wav.read_bytes())
    (sshd.root / "secret.wav").write_bytes(b"not for customers")
    (base / "escape.wav").symlink_to(sshd.root / "secret.wav")
    return base


def access(sshd: Sshd, base: Path, **overrides: object) -> SftpAccess:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.username,
        "known_host_key": sshd.host_public_key,
        "private_key": sshd.user_private_key,
        "base_dir": str(base),
    }
    values.update(overrides)
    return SftpAccess(**values)  # type: ignore[arg-type]


def sftp(acc: SftpAccess, name: str, dest: Path, **kwargs: object) -> FetchResult:
    policy = kwargs.pop("policy", LOOPBACK)
    return asyncio.run(fetch_sftp(acc, name, dest=dest, policy=policy, **kwargs))  # type: ignore[arg-type]


def test_sftp_downloads_with_a_key_and_pinned_host_key(
    sshd: Sshd, sftp_tree: Path, audio: AudioFiles, tmp_path: Path
) -> None:
    dest = tmp_path / "rec.wav"
    result = sftp(access(sshd, sftp_tree), "2024/06/call-1.wav", dest)
    expected = audio.stereo_wav.read_bytes()
    assert dest.read_bytes() == expected
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert "PRIVATE" not in repr(access(sshd, sftp_tree)) and "[redacted]" in repr(access(sshd, sftp_tree))


def test_sftp_refuses_a_server_with_another_host_key(sshd: Sshd, sftp_tree: Path, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with pytest.raises(HostKeyMismatch) as caught:
        sftp(access(sshd, sftp_tree, known_host_key=other), "2024/06/call-1.wav", tmp_path / "rec.wav")
    assert caught.value.permanent


def test_sftp_wrong_credentials_are_permanent(sshd: Sshd, sftp_tree: Path, tmp_path: Path) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    for acc in (
        access(sshd, sftp_tree, private_key=stranger),
        access(sshd, sftp_tree, private_key=None, password="wrong-password"),
    ):
        with pytest.raises(AccessDenied, match="refused the login") as caught:
            sftp(acc, "2024/06/call-1.wav", tmp_path / "rec.wav")
        assert caught.value.permanent
        assert "wrong-password" not in caught.value.message


def test_sftp_missing_file_and_size_cap(sshd: Sshd, sftp_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(RecordingNotFound):
        sftp(access(sshd, sftp_tree), "2024/06/nope.wav", tmp_path / "rec.wav")
    with pytest.raises(RecordingTooLarge):
        sftp(access(sshd, sftp_tree), "2024/06/call-1.wav", tmp_path / "rec.wav", limits=FetchLimits(max_bytes=1000))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", [*TRAVERSALS, "escape.wav"])
def test_sftp_refuses_paths_outside_the_base_folder(sshd: Sshd, sftp_tree: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRecordingLocation):
        sftp(access(sshd, sftp_tree), name, tmp_path / "rec.wav")
    assert not (tmp_path / "rec.wav").exists()


def test_sftp_host_is_subject_to_the_address_policy(sshd: Sshd, sftp_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        sftp(access(sshd, sftp_tree), "2024/06/call-1.wav", tmp_path / "rec.wav", policy=TargetPolicy())


@pytest.fixture
def drop(tmp_path: Path, audio: AudioFiles) -> DropFolder:
    base = tmp_path / "drop"
    (base / "inbound").mkdir(parents=True)
    (base / "inbound" / "call-7.mp3").write_bytes(audio.stereo_mp3.read_bytes())
    (tmp_path / "outside.wav").write_bytes(b"private")
    (base / "leak.wav").symlink_to(tmp_path / "outside.wav")
    (base / "leakdir").symlink_to(tmp_path)
    (base / "inbound" / "alias.mp3").symlink_to(base / "inbound" / "call-7.mp3")  # stays inside: fine
    return DropFolder(base)


def test_drop_folder_copies_the_file(drop: DropFolder, audio: AudioFiles, tmp_path: Path) -> None:
    for name in ("inbound/call-7.mp3", "inbound/alias.mp3", "./inbound//call-7.mp3"):
        dest = tmp_path / "out" / "rec.mp3"
        result = asyncio.run(fetch_drop_folder(drop, name, dest=dest))
        assert dest.read_bytes() == audio.stereo_mp3.read_bytes()
        assert result.size_bytes == os.path.getsize(audio.stereo_mp3)


@pytest.mark.parametrize("name", [*TRAVERSALS, "leak.wav", "leakdir/outside.wav"])
def test_drop_folder_refuses_traversal_and_symlinks_out(drop: DropFolder, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRecordingLocation):
        asyncio.run(fetch_drop_folder(drop, name, dest=tmp_path / "rec.wav"))
    assert not (tmp_path / "rec.wav").exists()


def test_drop_folder_missing_file_and_directory(drop: DropFolder, tmp_path: Path) -> None:
    with pytest.raises(RecordingNotFound):
        asyncio.run(fetch_drop_folder(drop, "inbound/none.mp3", dest=tmp_path / "rec.wav"))
    with pytest.raises(RecordingNotFound, match="not a regular file"):
        asyncio.run(fetch_drop_folder(drop, "inbound", dest=tmp_path / "rec.wav"))
    with pytest.raises(RecordingTooLarge):
        asyncio.run(
            fetch_drop_folder(drop, "inbound/call-7.mp3", dest=tmp_path / "r.mp3", limits=FetchLimits(max_bytes=10))
        )


def test_relative_parts() -> None:
    assert safe_relative_parts("a/./b//c.wav") == ["a", "b", "c.wav"]
    for bad in TRAVERSALS:
        with pytest.raises(InvalidRecordingLocation):
            safe_relative_parts(bad)
