"""Leases with fencing: one attempt at a time owns an export.

The lease is a Redis key holding the attempt's token with a TTL, renewed every few seconds by
the running attempt. Its renewal reads the export's state in the same script, so one round trip
is the job's heartbeat, its cancellation check and its fencing: an attempt whose lease lapsed
(or was taken over) learns it before it writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparc_video.core.errors import FailedPrecondition


@dataclass(frozen=True)
class Lease:
    """An attempt's claim on an export: `token` names the attempt, renewed every few seconds."""

    token: str
    ttl_s: float

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))


class LeaseHeld(FailedPrecondition):
    """Another live attempt holds the export's lease."""

    reason = "LEASE_HELD"


# Renew the lease only if it is still ours, and report the export's state in the same round
# trip: the running job's heartbeat, cancellation check and fencing in one call.
RENEW_LEASE = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return false end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local record = redis.call('GET', KEYS[2])
if not record then return false end
return cjson.decode(record)['state']
"""
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
