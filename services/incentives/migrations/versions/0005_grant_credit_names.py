"""incentives: a grant keeps the names its ledger credit carries

Revision ID: 0005
Revises: 0004

The ledger credit of a grant (services/incentives/granting.py, grant_transfer_request) carries the campaign's
and the sponsor's names in its metadata, and the ledger's idempotency compares whole requests: a credit asked
again after the campaign was renamed was a different request (IDEMPOTENCY_KEY_REUSED, dead-lettered). The grant
now stores those names as they were when it was granted (`credit_campaign_name`, `credit_sponsor_id`,
`credit_sponsor_name`), set by a trigger from the campaign row the granting transaction has just locked and
updated, so every attempt sends the identical request. Existing grants get the names they were credited with
under the code before (the campaign's current ones).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("credit_campaign_name", "credit_sponsor_id", "credit_sponsor_name")


def upgrade() -> None:
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE grants ADD COLUMN {column} text")
    op.execute(
        """
        UPDATE grants g SET credit_campaign_name = c.name, credit_sponsor_id = c.created_by_user_id,
                            credit_sponsor_name = c.sponsor_name
        FROM campaigns c WHERE c.id = g.campaign_id
        """
    )
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE grants ALTER COLUMN {column} SET NOT NULL")
    op.execute(
        """
        CREATE FUNCTION grants_credit_names() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            SELECT c.name, c.created_by_user_id, c.sponsor_name
              INTO NEW.credit_campaign_name, NEW.credit_sponsor_id, NEW.credit_sponsor_name
              FROM campaigns c WHERE c.id = NEW.campaign_id;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER grants_credit_names BEFORE INSERT ON grants FOR EACH ROW EXECUTE FUNCTION grants_credit_names()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER grants_credit_names ON grants")
    op.execute("DROP FUNCTION grants_credit_names()")
    for column in _COLUMNS:
        op.drop_column("grants", column)
