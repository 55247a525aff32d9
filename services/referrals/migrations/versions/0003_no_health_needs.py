"""forget health needs recorded from events of an intake that still published them (rule 7)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 18:40:00

"""
from typing import Sequence, Union

from alembic import op

revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.execute("DELETE FROM referrals_person_need WHERE need IN ('physical_health', 'mental_health')")


def downgrade() -> None:
    """Nothing to restore: the codes are gone on purpose."""
