"""index places by kind, state and id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 10:45:00

Finding the first vacant place of a kind read every occupied place of that kind before it.
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('place_by_kind_state', 'housing_place', ['kind', 'state', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('place_by_kind_state', table_name='housing_place')
