"""Encryption at rest with one data key per person (crypto-shredding).

Each person's sensitive fields are sealed with AES-GCM under that person's own data key, with the
person_ref as associated data (a sealed value moved to another case file does not open). Data keys
are stored wrapped by the master key ring (`INTAKE_KEY_RING`, `id:base64key,...`, first active) in
`intake_person_key`, in a store of their own (`INTAKE_KEYS_DATABASE_URL`), apart from the data:
erasure deletes the person's data key there, so a copy of intake's store, taken before or after,
no longer opens. Names, phones and e-mails are found through keyed hashes (`INTAKE_SEARCH_KEY`), never
plaintext.

    python -m services.intake.keys rotate    # re-wrap every data key with the active master key
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import insert
from sqlmodel import delete, select

from shared.migrations import upgrade
from shared.store import GroupCommit, make_engine, session_factory

from . import domain
from .store import PersonKey

DEFAULT_KEYS_DATABASE_URL = "sqlite+aiosqlite:///./var/intake-keys.db"

WRAP_AAD = b"refuge-intake-data-key"
# Development only (refused elsewhere by the settings): anyone can read it here.
DEV_KEY_RING = "dev1:" + base64.b64encode(hashlib.sha256(b"refuge development key ring").digest()).decode()
DEV_SEARCH_KEY = "refuge development search key"


class KeyRingError(ValueError):
    pass


class KeyRing:
    """Master keys by id; the first is the one new data keys are wrapped with."""

    def __init__(self, spec: str):
        self.keys: dict[str, bytes] = {}
        for entry in (e.strip() for e in spec.split(",") if e.strip()):
            key_id, _, encoded = entry.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise KeyRingError(f"key {key_id!r} is not base64") from None
            if not key_id or len(key) != 32:
                raise KeyRingError(f"key {key_id!r} must be an id and 32 bytes in base64")
            self.keys[key_id] = key
        if not self.keys:
            raise KeyRingError("the key ring is empty")
        self.active = next(iter(self.keys))

    def wrap(self, data_key: bytes) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.active]).encrypt(nonce, data_key, WRAP_AAD)
        return f"{self.active}:{base64.b64encode(nonce + sealed).decode()}"

    def unwrap(self, wrapped: str) -> bytes:
        key_id, _, encoded = wrapped.partition(":")
        if key_id not in self.keys:
            raise KeyRingError(f"master key {key_id!r} is not in the key ring")
        raw = base64.b64decode(encoded)
        return AESGCM(self.keys[key_id]).decrypt(raw[:12], raw[12:], WRAP_AAD)


class Vault:
    """Seals and opens a person's fields; computes the keyed hashes used to find them."""

    def __init__(self, ring: KeyRing, search_key: str, keys_database_url: str = DEFAULT_KEYS_DATABASE_URL):
        self.ring = ring
        self.search_key = hashlib.sha256(("search:" + search_key).encode()).digest()
        self.keys_database_url = keys_database_url
        self._engine = None
        self._sessions = None
        self._new_keys: GroupCommit | None = None

    async def sessions(self):
        if self._sessions is None:
            self._engine = make_engine(self.keys_database_url)
            await upgrade(self._engine, "intake_keys")
            self._sessions = session_factory(self._engine)
            self._new_keys = GroupCommit(self._sessions, _insert_keys)
        return self._sessions

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = self._sessions = self._new_keys = None

    # --- data keys (the `session` argument, intake's own, is not where they live) --------------

    async def key_for(self, _session, person_ref: str, *, create: bool = False) -> bytes | None:
        async with (await self.sessions())() as keys:
            row = (await keys.exec(select(PersonKey).where(PersonKey.person_ref == person_ref))).first()
        if row is not None:
            return self.ring.unwrap(row.wrapped_key)
        return await self.new_key(person_ref) if create else None

    async def new_key(self, person_ref: str) -> bytes:
        """A data key for a new case file. Committed at once, before the case file: a key left
        without data if intake's own unit of work then fails opens nothing and harms no one."""
        await self.sessions()
        data_key = AESGCM.generate_key(bit_length=256)
        await self._new_keys.submit({"person_ref": person_ref, "wrapped_key": self.ring.wrap(data_key)})
        return data_key

    async def keys_for(self, _session, person_refs) -> dict[str, bytes]:
        refs = list(set(person_refs))
        if not refs:
            return {}
        async with (await self.sessions())() as keys:
            rows = (await keys.exec(select(PersonKey).where(PersonKey.person_ref.in_(refs)))).all()
        return {r.person_ref: self.ring.unwrap(r.wrapped_key) for r in rows}

    async def shred(self, person_ref: str) -> int:
        async with (await self.sessions())() as keys:
            deleted = (await keys.exec(delete(PersonKey).where(PersonKey.person_ref == person_ref))).rowcount or 0
            await keys.commit()
        return deleted

    # --- sealing -----------------------------------------------------------------------------

    @staticmethod
    def seal(data_key: bytes, person_ref: str, fields: dict) -> str:
        nonce = os.urandom(12)
        plain = json.dumps(fields, separators=(",", ":"), default=str).encode()
        return "v1:" + base64.b64encode(nonce + AESGCM(data_key).encrypt(nonce, plain, person_ref.encode())).decode()

    @staticmethod
    def open(data_key: bytes | None, person_ref: str, sealed: str | None) -> dict:
        """The fields, or {} when there is nothing sealed or the key is gone (erased)."""
        if not sealed or data_key is None:
            return {}
        raw = base64.b64decode(sealed.removeprefix("v1:"))
        return json.loads(AESGCM(data_key).decrypt(raw[:12], raw[12:], person_ref.encode()))

    # --- keyed hashes for finding a person ---------------------------------------------------

    def _mac(self, kind: str, value: str) -> str:
        return hmac.new(self.search_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:20]

    def name_hash(self, name: str) -> str:
        key = domain.name_key(name)
        return self._mac("name", key) if key else ""

    def phone_hash(self, phone: str | None) -> str | None:
        key = domain.phone_key(phone)
        return self._mac("phone", key) if key else None

    def email_hash(self, email: str | None) -> str | None:
        key = domain.email_key(email)
        return self._mac("email", key) if key else None

    def name_token_hashes(self, name: str) -> str:
        """Hashes of every name word and of each of its beginnings from three letters: a search for
        'vandenb' finds 'Vandenberghe' without the store holding either."""
        found = set()
        for token in domain.name_key(name).split():
            found.add(self._mac("token", token))
            for end in range(3, len(token)):
                found.add(self._mac("token", token[:end]))
        return " ".join(sorted(found))

    def query_token_hashes(self, text: str) -> list[str]:
        return [self._mac("token", token) for token in domain.name_key(text).split()]


async def _insert_keys(session, rows: list[dict]) -> None:
    await session.execute(insert(PersonKey.__table__), rows)


async def rotate(vault: Vault) -> int:
    """Re-wrap every data key with the active master key; the data itself is untouched."""
    count, ring = 0, vault.ring
    async with (await vault.sessions())() as session:
        for row in (await session.exec(select(PersonKey))).all():
            if not row.wrapped_key.startswith(ring.active + ":"):
                row.wrapped_key = ring.wrap(ring.unwrap(row.wrapped_key))
                session.add(row)
                count += 1
        await session.commit()
    return count


async def _rotate_command() -> None:
    from .settings import IntakeSettings

    settings = IntakeSettings()
    vault = Vault(KeyRing(settings.key_ring.get_secret_value()), settings.search_key.get_secret_value(),
                  settings.keys_database_url)
    try:
        count = await rotate(vault)
    finally:
        await vault.close()
    print(f"{count} data keys re-wrapped with master key {vault.ring.active}")


if __name__ == "__main__":
    if sys.argv[1:] != ["rotate"]:
        sys.exit("usage: python -m services.intake.keys rotate")
    asyncio.run(_rotate_command())
