"""intake's key store: one wrapped data key per person

Revision ID: 0001
Revises:
Create Date: 2026-12-03 18:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlmodel  # noqa: F401
import sqlalchemy as sa

revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Key stores made before this migration existed already hold the table (and the keys).
    if sa.inspect(op.get_bind()).has_table("intake_person_key"):
        return
    op.create_table('intake_person_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_ref', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('wrapped_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('intake_person_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intake_person_key_person_ref'), ['person_ref'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('intake_person_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intake_person_key_person_ref'))
    op.drop_table('intake_person_key')
