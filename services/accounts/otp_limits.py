"""Login-code rate limits and lockout, kept in Redis so every accounts replica enforces the same counts.

Each check is one Lua script: one round trip, and atomic, so concurrent requests cannot slip past a limit.
"""

from __future__ import annotations

import enum

import redis.asyncio as redis

from services.accounts.domain import OtpPolicy

# KEYS[1..n] fixed-window counters, ARGV[i] their limits, ARGV[n+1] window seconds, KEYS[n+1] lock key.
# Returns 0 = allowed (and counted), 1 = locked, 2 = over a limit (not counted).
_START = """
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return 1 end
local n = #KEYS - 1
for i = 1, n do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[i]) then return 2 end
end
for i = 1, n do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[n + 1]) end
end
return 0
"""

# KEYS[1] wrong-code counter, KEYS[2] lock; ARGV: max wrong codes, counter window, lockout seconds.
# Returns 1 when this wrong code locks the identity, else 0.
_WRONG_CODE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class StartDecision(enum.Enum):
    ALLOWED = 0
    LOCKED = 1
    RATE_LIMITED = 2


class OtpLimits:
    def __init__(self, client: redis.Redis, policy: OtpPolicy, prefix: str = "accounts:otp") -> None:
        self._redis = client
        self._policy = policy
        self._prefix = prefix
        self._start = client.register_script(_START)
        self._wrong = client.register_script(_WRONG_CODE)

    def _lock_key(self, identity: str) -> str:
        return f"{self._prefix}:lock:{identity}"

    async def try_start(self, identity: str, client_ip: str) -> StartDecision:
        p = self._policy
        result = await self._start(
            keys=[f"{self._prefix}:start:{identity}", f"{self._prefix}:start-ip:{client_ip}", self._lock_key(identity)],
            args=[p.starts_per_identity, p.starts_per_ip, p.start_window_s],
        )
        return StartDecision(int(result))

    async def is_locked(self, identity: str) -> bool:
        return bool(await self._redis.exists(self._lock_key(identity)))

    async def record_wrong_code(self, identity: str) -> bool:
        """Counts a wrong code; True when it locked the identity."""
        p = self._policy
        locked = await self._wrong(
            keys=[f"{self._prefix}:wrong:{identity}", self._lock_key(identity)],
            args=[p.max_wrong_codes, p.wrong_code_window_s, p.lockout_s],
        )
        return bool(locked)

    async def clear_wrong_codes(self, identity: str) -> None:
        await self._redis.delete(f"{self._prefix}:wrong:{identity}")
