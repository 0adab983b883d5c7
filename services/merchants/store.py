"""Tables of the merchants schema. Its domain tables arrive with its own issue; the outbox is here from the
start because every cross-service effect of this service goes through it."""

from __future__ import annotations

import sqlalchemy as sa

from services.common.outbox import outbox_table

metadata = sa.MetaData()
outbox = outbox_table(metadata)
