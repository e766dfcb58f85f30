"""jobs: ``job_runs``, the claim on each scheduled job's run

With several server processes each running the scheduler, every process ran every job
(the SLA tick twice a minute with two workers, the monthly reports twice). A process now
claims a job's run in this table first, and the others skip it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:00:00
"""

from alembic import op
import sqlalchemy as sa
import shiyu.kit.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'job_runs',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('started_at', shiyu.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', shiyu.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('holder', sa.String(length=128), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('job_runs')
