from services.common.migrations import run_env
from services.sessions.store import metadata

run_env(metadata)
