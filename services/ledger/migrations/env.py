from services.common.migrations import run_env
from services.ledger.store import metadata

run_env(metadata)
