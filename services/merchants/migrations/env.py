from services.common.migrations import run_env
from services.merchants.store import metadata

run_env(metadata)
