"""Staff accounts: argon2-hashed passwords in intake's store, managed from the command line.

    python -m services.intake.accounts create USERNAME --role ROLE [--role ROLE ...]
    python -m services.intake.accounts set-password USERNAME
    python -m services.intake.accounts deactivate USERNAME | activate USERNAME
    python -m services.intake.accounts list

The password is read from a prompt (twice) or, when stdin is not a terminal, from its first
line; never from an argument, so it stays out of shell history and process lists. The store is
the one intake uses (INTAKE_DATABASE_URL, default ./var/intake.db).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import re
import sys
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import bindparam
from sqlmodel import col, func, select

from shared.auth import Role
from shared.store import READ_ONLY

from .store import StaffAccount

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    pass


IS_ACTIVE = select(StaffAccount.active).where(StaffAccount.username == bindparam("username"))


class StaffAccounts:
    """Accounts in intake's store. The argon2id cost comes from settings (defaults: argon2-cffi's,
    RFC 9106's low-memory profile); raising it later rehashes each password at its next sign-in."""

    def __init__(self, sessions, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4):
        self.sessions = sessions
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)

    @functools.cached_property
    def _dummy_hash(self) -> str:
        # Verified when the user name is unknown, so a wrong name costs as long as a wrong password.
        return self.hasher.hash("not-a-real-password")

    def hash_password(self, password: str) -> str:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
        return self.hasher.hash(password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def authenticate(self, username: str, password: str) -> StaffAccount | None:
        """The active account with this user name and password, else None (same answer for every failure)."""
        async with self.sessions() as session:
            account = (await session.exec(
                select(StaffAccount).where(StaffAccount.username == username.strip().lower()))).first()
            stored = account.password_hash if account is not None else self._dummy_hash
            ok = await asyncio.to_thread(self._verify, stored, password)
            if not ok or account is None or not account.active:
                return None
            if self.hasher.check_needs_rehash(account.password_hash):
                account.password_hash = await asyncio.to_thread(self.hasher.hash, password)
            account.last_sign_in_at = datetime.now(UTC)
            session.add(account)
            await session.commit()
            return account

    async def is_refused(self, username: str) -> bool:
        """A signed token stays valid until it expires; an account deactivated since is refused at once."""
        # On every signed-in request: a plain read on a connection, without an ORM session.
        async with self.sessions.kw["bind"].connect() as connection:
            await connection.execution_options(**READ_ONLY)
            active = (await connection.execute(IS_ACTIVE, {"username": username})).scalar()
        return active is False

    async def create(self, username: str, password: str, roles: list[Role]) -> StaffAccount:
        username = username.strip().lower()
        if not USERNAME.match(username):
            raise AccountError("a user name is 2 to 64 lowercase letters, digits, '.', '_' or '-'")
        if not roles:
            raise AccountError("give at least one --role")
        async with self.sessions() as session:
            if (await session.exec(select(StaffAccount.id).where(StaffAccount.username == username))).first():
                raise AccountError(f"an account named {username} already exists")
            account = StaffAccount(username=username, password_hash=self.hash_password(password),
                                   roles=sorted({r.value for r in roles}))
            session.add(account)
            await session.commit()
            return account

    async def update(self, username: str, **changes) -> None:
        async with self.sessions() as session:
            account = (await session.exec(select(StaffAccount).where(StaffAccount.username == username.lower()))).first()
            if account is None:
                raise AccountError(f"no account named {username}")
            for key, value in changes.items():
                setattr(account, key, value)
            session.add(account)
            await session.commit()

    async def count(self) -> int:
        async with self.sessions() as session:
            return (await session.exec(select(func.count()).select_from(StaffAccount))).one()


def _read_password(confirm: bool = True) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Password again: ") != password:
        raise AccountError("the two passwords differ")
    return password


async def _main(args: argparse.Namespace) -> str:
    from shared.migrations import upgrade
    from shared.store import make_engine, session_factory

    from .settings import IntakeSettings

    settings = IntakeSettings()
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine, "intake")  # the same migrations intake runs at start, so either may come first
        sessions = session_factory(engine)
        staff = StaffAccounts(sessions, time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib)
        if args.command == "create":
            account = await staff.create(args.username, _read_password(), [Role(r) for r in args.role])
            return f"created {account.username} ({', '.join(account.roles)})"
        if args.command == "set-password":
            await staff.update(args.username, password_hash=staff.hash_password(_read_password()))
            return f"password changed for {args.username}"
        if args.command in ("activate", "deactivate"):
            await staff.update(args.username, active=args.command == "activate")
            return f"{args.username} {args.command}d"
        async with sessions() as session:
            accounts = (await session.exec(select(StaffAccount).order_by(col(StaffAccount.username)))).all()
        return "\n".join(f"{a.username}\t{','.join(a.roles)}\t{'active' if a.active else 'inactive'}"
                         for a in accounts) or "no accounts"
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.intake.accounts", description="manage staff accounts")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create an account (password from a prompt or stdin)")
    create.add_argument("username")
    create.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    for name in ("set-password", "activate", "deactivate"):
        commands.add_parser(name).add_argument("username")
    commands.add_parser("list")
    args = parser.parse_args(argv)
    try:
        print(asyncio.run(_main(args)))
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
