"""library: resources, referrals, tools and their full-text index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

SQLite gets an external-content FTS5 table kept in step by triggers; PostgreSQL gets a
generated, weighted tsvector column with a GIN index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

FTS_COLUMNS = "title, keyword_text, annotation, publisher"

SQLITE_UP = [
    f"""CREATE VIRTUAL TABLE resources_fts USING fts5(
        {FTS_COLUMNS}, content='resources', content_rowid='num',
        tokenize='porter unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER resources_fts_insert AFTER INSERT ON resources BEGIN
        INSERT INTO resources_fts(rowid, {FTS_COLUMNS})
        VALUES (new.num, new.title, new.keyword_text, new.annotation, new.publisher);
    END""",
    f"""CREATE TRIGGER resources_fts_delete AFTER DELETE ON resources BEGIN
        INSERT INTO resources_fts(resources_fts, rowid, {FTS_COLUMNS})
        VALUES ('delete', old.num, old.title, old.keyword_text, old.annotation, old.publisher);
    END""",
    f"""CREATE TRIGGER resources_fts_update AFTER UPDATE ON resources BEGIN
        INSERT INTO resources_fts(resources_fts, rowid, {FTS_COLUMNS})
        VALUES ('delete', old.num, old.title, old.keyword_text, old.annotation, old.publisher);
        INSERT INTO resources_fts(rowid, {FTS_COLUMNS})
        VALUES (new.num, new.title, new.keyword_text, new.annotation, new.publisher);
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS resources_fts_update",
    "DROP TRIGGER IF EXISTS resources_fts_delete",
    "DROP TRIGGER IF EXISTS resources_fts_insert",
    "DROP TABLE IF EXISTS resources_fts",
]
POSTGRES_UP = [
    """ALTER TABLE resources ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(keyword_text, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(annotation, '')), 'C') ||
        setweight(to_tsvector('english', coalesce(publisher, '')), 'D')) STORED""",
    "CREATE INDEX ix_resources_search_vector ON resources USING gin (search_vector)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_resources_search_vector",
    "ALTER TABLE resources DROP COLUMN IF EXISTS search_vector",
]


def upgrade() -> None:
    op.create_table('resources',
    sa.Column('num', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('publisher', sa.String(length=200), nullable=False),
    sa.Column('year', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('topics', sa.JSON(), nullable=False),
    sa.Column('annotation', sa.Text(), nullable=False),
    sa.Column('audience', sa.Text(), nullable=False),
    sa.Column('reviewed', sa.String(length=10), nullable=True),
    sa.Column('keywords', sa.JSON(), nullable=False),
    sa.Column('keyword_text', sa.Text(), nullable=False),
    sa.Column('sort_key', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('num', name=op.f('pk_resources')),
    sa.UniqueConstraint('id', name=op.f('uq_resources_id')),
    sa.UniqueConstraint('url', name=op.f('uq_resources_url'))
    )
    op.create_index('ix_resources_kind', 'resources', ['kind'])
    op.create_index('ix_resources_year', 'resources', ['year'])
    op.create_index('ix_resources_sort_key', 'resources', ['sort_key'])
    op.create_index('ix_resources_publisher_lower', 'resources', [sa.text('lower(publisher)')])
    op.create_table('resource_topics',
    sa.Column('resource_num', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['resource_num'], ['resources.num'], name=op.f('fk_resource_topics_resource_num_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resource_num', 'topic', name=op.f('pk_resource_topics'))
    )
    op.create_index('ix_resource_topics_topic', 'resource_topics', ['topic'])
    op.create_table('referrals',
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('topics', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('contact', sa.String(length=2000), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referrals')),
    sa.UniqueConstraint('url', name=op.f('uq_referrals_url'))
    )
    op.create_table('tools',
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('publisher', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('topics', sa.JSON(), nullable=False),
    sa.Column('annotation', sa.Text(), nullable=False),
    sa.Column('keywords', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tools')),
    sa.UniqueConstraint('url', name=op.f('uq_tools_url'))
    )
    op.create_table('library_meta',
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_library_meta'))
    )
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == "sqlite" else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DOWN if dialect == "sqlite" else POSTGRES_DOWN:
        op.execute(statement)
    op.drop_table('library_meta')
    op.drop_table('tools')
    op.drop_table('referrals')
    op.drop_index('ix_resource_topics_topic', table_name='resource_topics')
    op.drop_table('resource_topics')
    op.drop_index('ix_resources_publisher_lower', table_name='resources')
    op.drop_index('ix_resources_sort_key', table_name='resources')
    op.drop_index('ix_resources_year', table_name='resources')
    op.drop_index('ix_resources_kind', table_name='resources')
    op.drop_table('resources')
