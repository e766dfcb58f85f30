"""open311: partners' API keys and the requests filed through Open311

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 12:00:00
"""

from alembic import op
import sqlalchemy as sa
import shiyu.kit.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('open311_api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner', sa.String(length=48), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', shiyu.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('revoked_at', shiyu.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', shiyu.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('use_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open311_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_open311_api_keys_key_hash')),
    sa.UniqueConstraint('partner', name=op.f('uq_open311_api_keys_partner'))
    )
    op.create_table('open311_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('partner', sa.String(length=48), nullable=False),
    sa.Column('api_key_id', sa.Integer(), nullable=True),
    sa.Column('jurisdiction_code', sa.String(length=32), nullable=False),
    sa.Column('scope_path', sa.String(length=512), nullable=False),
    sa.Column('service_code', sa.String(length=32), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('media_url', sa.String(length=500), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('requested_at', shiyu.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['open311_api_keys.id'], name=op.f('fk_open311_requests_api_key_id_open311_api_keys')),
    sa.ForeignKeyConstraint(['item_id'], ['work_items.id'], name=op.f('fk_open311_requests_item_id_work_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open311_requests')),
    sa.UniqueConstraint('item_id', name=op.f('uq_open311_requests_item_id')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_open311_requests_token_hash'))
    )
    with op.batch_alter_table('open311_requests', schema=None) as batch_op:
        batch_op.create_index('ix_open311_requests_requested_at', ['requested_at'], unique=False)
        batch_op.create_index('ix_open311_requests_scope_path', ['scope_path'], unique=False, postgresql_ops={'scope_path': 'text_pattern_ops'})


def downgrade() -> None:
    with op.batch_alter_table('open311_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_open311_requests_scope_path', postgresql_ops={'scope_path': 'text_pattern_ops'})
        batch_op.drop_index('ix_open311_requests_requested_at')

    op.drop_table('open311_requests')
    op.drop_table('open311_api_keys')
