"""work items: the duplicate-search index on PostgreSQL only

SQLite's planner, without statistics, took ``(category_code, lon, lat)`` for the
dashboard's per-category counts and read every item (p95 ~700 ms at the medium demo
instead of ~80 ms); on SQLite the duplicate search uses ``(lon, lat)``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:45:00
"""

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP INDEX IF EXISTS ix_work_items_category_lonlat')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.create_index('ix_work_items_category_lonlat', 'work_items', ['category_code', 'lon', 'lat'], unique=False)
