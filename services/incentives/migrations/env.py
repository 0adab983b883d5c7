from services.common.migrations import run_env
from services.incentives.store import metadata

run_env(metadata)
