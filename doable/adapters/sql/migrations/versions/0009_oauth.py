"""The built-in OAuth authorization server's records: registered clients, authorization codes,
refresh tokens and the issued access tokens (so revoking one takes effect at once). Codes and
tokens are stored as SHA-256 hashes, never as themselves.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "oauth_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "oauth_refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "oauth_access_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("refresh_hash", sa.String(64), nullable=True),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_oauth_access_tokens_refresh", "oauth_access_tokens", ["refresh_hash"])


def downgrade() -> None:
    op.drop_table("oauth_access_tokens")
    op.drop_table("oauth_refresh_tokens")
    op.drop_table("oauth_codes")
    op.drop_table("oauth_clients")
