"""work items: an index for the duplicate search 并单 (category, then the point)

The duplicate search looks for items of one category inside a small box around a new
item. On ``(category_code, created_at)`` it read every item of the category in the
72-hour window (thousands on a flood day); on ``(category_code, lon, lat)`` it reads the
box.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 15:00:00
"""

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_work_items_category_lonlat', 'work_items', ['category_code', 'lon', 'lat'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_work_items_category_lonlat', table_name='work_items')
