"""Fan-out of export events from Redis Streams to any number of in-process watchers.

One reader task per server process blocks on a single XREAD over every stream someone watches
and hands each event to that stream's subscribers, so the Redis connections used for progress do
not grow with the number of WatchExport calls. A new subscription interrupts the blocking read
with CLIENT UNBLOCK, so its first event is not delayed by the block timeout.

Each subscriber has a mailbox that coalesces progress (latest wins) when its client is slow, but
never drops a state change, so a slow consumer cannot grow server memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import redis.exceptions

from sparc_video.core.keys import Keys
from sparc_video.exports.event_log import EventKind, ExportEvent, decode_event, event_id_key

log = logging.getLogger(__name__)

# A new subscription interrupts the read; the block only bounds a lost CLIENT UNBLOCK race.
_BLOCK_MS = 1000
_READ_COUNT = 500
_CONTROL_CONNECTIONS = 2


class Mailbox:
    """Pending events of one subscriber, with consecutive progress events coalesced."""

    def __init__(self, after_id: str) -> None:
        self._after = event_id_key(after_id)
        self._events: list[ExportEvent] = []
        self._ready = asyncio.Event()
        self.error: BaseException | None = None

    def put(self, event: ExportEvent) -> None:
        # The gap fetch of a new subscriber and the shared reader may both deliver an event.
        key = event_id_key(event.event_id)
        if key <= self._after:
            return
        self._after = key
        if (
            event.kind == EventKind.PROGRESS
            and self._events
            and self._events[-1].kind == EventKind.PROGRESS
        ):
            self._events[-1] = event
        else:
            self._events.append(event)
        self._ready.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._ready.set()

    async def get(self) -> list[ExportEvent]:
        await self._ready.wait()
        self._ready.clear()
        if self.error is not None and not self._events:
            raise self.error
        events, self._events = self._events, []
        return events


@dataclass
class _Stream:
    last_id: str
    mailboxes: set[Mailbox] = field(default_factory=set)


class EventHub:
    """Owns one Redis connection for blocking reads; start() before use, aclose() at shutdown."""

    def __init__(self, redis_url: str, keys: Keys) -> None:
        # Named, so `CLIENT LIST` shows what the hub holds: one blocked reader, and a small
        # bounded pool for CLIENT UNBLOCK and new subscribers' catch-up reads, which wait for a
        # free connection rather than open one per subscriber when thousands arrive at once.
        self.client_name = f"{keys.prefix}:event-hub"
        self._reader = aioredis.Redis.from_url(
            redis_url, single_connection_client=True, client_name=self.client_name
        )
        self._control = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                redis_url,
                max_connections=_CONTROL_CONNECTIONS,
                timeout=None,
                client_name=self.client_name,
            )
        )
        self._keys = keys
        self._streams: dict[str, _Stream] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._reader_client_id: int | None = None
        self._blocked = False
        self._closing: BaseException | None = None

    @property
    def watched_streams(self) -> int:
        return len(self._streams)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub-reader")

    def end_watches(self, error: BaseException) -> None:
        """Fail every current and future subscription with `error` (server shutting down)."""
        self._closing = error
        for stream in self._streams.values():
            for mailbox in stream.mailboxes:
                mailbox.fail(error)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._reader.aclose()
        await self._control.aclose()
        # A pool handed to a client is not the client's to close.
        await self._control.connection_pool.disconnect()

    @contextlib.asynccontextmanager
    async def subscribe(self, export_id: str, after_id: str) -> AsyncIterator[Mailbox]:
        """Receive the export's events newer than after_id while the context is open."""
        if self._closing is not None:
            raise self._closing
        key = self._keys.events(export_id)
        mailbox = Mailbox(after_id)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(last_id=after_id)
            await self._interrupt_read()
        elif event_id_key(after_id) < event_id_key(stream.last_id):
            # The shared reader is already past after_id: fetch the gap for this subscriber.
            for event_id, fields in await self._control.xrange(
                key, min=f"({after_id}", max=stream.last_id
            ):
                mailbox.put(decode_event(event_id, fields))
        stream.mailboxes.add(mailbox)
        try:
            yield mailbox
        finally:
            stream.mailboxes.discard(mailbox)
            if not stream.mailboxes and self._streams.get(key) is stream:
                del self._streams[key]

    async def _interrupt_read(self) -> None:
        self._wakeup.set()
        if self._blocked and self._reader_client_id is not None:
            with contextlib.suppress(redis.exceptions.RedisError):
                await self._control.client_unblock(self._reader_client_id)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self._reader_client_id is None:
                    self._reader_client_id = int(await self._reader.client_id())
                if not self._streams:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                self._wakeup.clear()
                streams = {key: s.last_id for key, s in self._streams.items()}
                self._blocked = True
                try:
                    replies = await self._reader.xread(streams, count=_READ_COUNT, block=_BLOCK_MS)
                finally:
                    self._blocked = False
                for raw_key, entries in replies or []:
                    key = raw_key.decode()
                    stream = self._streams.get(key)
                    if stream is None:
                        continue
                    for event_id, fields in entries:
                        event = decode_event(event_id, fields)
                        stream.last_id = event.event_id
                        for mailbox in list(stream.mailboxes):
                            mailbox.put(event)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except redis.exceptions.RedisError as exc:
                # Watchers see the outage and can reconnect; the reader keeps trying.
                log.warning("event reader lost Redis: %s", exc)
                self._reader_client_id = None
                for stream in self._streams.values():
                    for mailbox in stream.mailboxes:
                        mailbox.fail(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
