"""Encryption at rest for customer secrets (recording auth configurations)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from callplane.errors import CallplaneError


class SecretUnreadable(CallplaneError):
    """A stored secret could not be decrypted with the configured key."""


class SecretBox:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadable() from exc
