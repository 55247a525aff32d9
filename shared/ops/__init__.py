"""Operator tooling behind the `refuge` command: stream lag, dead letters, backup and restore,
the AsyncAPI document. Each module does the work and returns plain data; `shared.cli` prints it."""
