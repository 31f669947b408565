"""Synchronous facades of the async clients, derived from them rather than written again.

Each sync method is one line, `name = blocking(AsyncClient.name)` (or `iterating(...)` for an
async iterator): a descriptor that runs the async method on the facade's private event loop
(`asyncio.Runner`). The signature and docstring are the async method's, and mypy sees them
too, through `ParamSpec`: `ExportClient().create_export` is typed
`(source_key, operations, *, request_id=..., ...) -> Export`.

Why this and not a fully generated class (`__getattr__`, or a loop over the async class's
methods at import): either would be invisible to mypy, so every sync call would be `Any`. The
one line per method is the price of keeping the types, and `SyncClient.__init_subclass__`
makes it impossible to forget one: a facade lacking a public async method of its client fails
at import.

Not for use from inside a running event loop (use the async client there). Callbacks
(`on_reconnect`, download progress) run on the caller's thread, as the loop does.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, Unpack, overload

from sparc_video.client.cameras import AsyncCameraClient
from sparc_video.client.channel import DEFAULT_TARGET, ChannelClient, ChannelOptions
from sparc_video.client.exports import AsyncExportClient

_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C", bound=ChannelClient)
_A = TypeVar("_A")
_S = TypeVar("_S")


class SyncClient(Generic[_C]):
    """An async client (`async_class`) driven from synchronous code. Use as `with`, or call
    `close()`. Takes the same arguments as the async client."""

    async_class: type[_C]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        async_class = cls.__dict__.get("async_class")
        if async_class is None:
            return
        missing = [
            name
            for name, member in inspect.getmembers(async_class)
            if not name.startswith("_")
            and name != "close"
            and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
            and not isinstance(cls.__dict__.get(name), _Facade)
        ]
        if missing:
            raise TypeError(f"{cls.__name__} lacks sync versions of {missing}")

    def __init__(self, target: str = DEFAULT_TARGET, **options: Unpack[ChannelOptions]) -> None:
        self._runner = asyncio.Runner()
        # grpc.aio binds a channel to the loop it is created on: create it on the runner's loop.
        self._client: _C = self._runner.run(_construct(self.async_class, target, options))
        self._closed = False

    @property
    def async_client(self) -> _C:
        return self._client

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and the loop; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def _run(self, coroutine: Coroutine[Any, Any, _R]) -> _R:
        return self._runner.run(coroutine)

    def _iterate(self, iterator: AsyncIterator[_R]) -> Iterator[_R]:
        try:
            while True:
                try:
                    yield self._run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                self._run(aclose())


class _Facade(Generic[_C, _P, _A, _S]):
    """A method of the async client as a blocking method of the facade: `adapt` turns what
    the async method returns (a coroutine, an async iterator) into the sync result."""

    def __init__(
        self,
        method: Callable[Concatenate[_C, _P], _A],
        adapt: Callable[[SyncClient[_C], _A], _S],
    ) -> None:
        self._method, self._adapt = method, adapt
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, instance: SyncClient[_C], owner: type[Any]) -> Callable[_P, _S]: ...

    def __get__(self, instance: SyncClient[_C] | None, owner: type[Any]) -> Self | Callable[_P, _S]:
        if instance is None:
            return self
        method, adapt, client = self._method, self._adapt, instance.async_client

        @functools.wraps(method)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _S:
            return adapt(instance, method(client, *args, **kwargs))

        return call


def blocking(
    method: Callable[Concatenate[_C, _P], Coroutine[Any, Any, _R]],
) -> _Facade[_C, _P, Coroutine[Any, Any, _R], _R]:
    """A coroutine method, run to its result on the facade's loop."""
    return _Facade(method, SyncClient._run)


def iterating(
    method: Callable[Concatenate[_C, _P], AsyncIterator[_R]],
) -> _Facade[_C, _P, AsyncIterator[_R], Iterator[_R]]:
    """An async-iterator method, as an iterator that steps it on the facade's loop."""
    return _Facade(method, SyncClient._iterate)


async def _construct(cls: type[_C], target: str, options: ChannelOptions) -> _C:
    return cls(target, **options)


async def _next(iterator: AsyncIterator[_R]) -> _R:
    return await anext(iterator)


class ExportClient(SyncClient[AsyncExportClient]):
    """`AsyncExportClient` for synchronous code: each method runs the async one on a private
    event loop. Not for use from inside a running event loop (use the async client there)."""

    async_class = AsyncExportClient

    create_export = blocking(AsyncExportClient.create_export)
    get_export = blocking(AsyncExportClient.get_export)
    list_exports = blocking(AsyncExportClient.list_exports)
    iter_exports = iterating(AsyncExportClient.iter_exports)
    cancel_export = blocking(AsyncExportClient.cancel_export)
    get_export_download_url = blocking(AsyncExportClient.get_export_download_url)
    get_queue_stats = blocking(AsyncExportClient.get_queue_stats)
    get_manifest_signing_key = blocking(AsyncExportClient.get_manifest_signing_key)
    watch_export = iterating(AsyncExportClient.watch_export)
    wait_export = blocking(AsyncExportClient.wait_export)
    download_outputs = blocking(AsyncExportClient.download_outputs)


class CameraClient(SyncClient[AsyncCameraClient]):
    """`AsyncCameraClient` for synchronous code (as `ExportClient`)."""

    async_class = AsyncCameraClient

    create_camera = blocking(AsyncCameraClient.create_camera)
    get_camera = blocking(AsyncCameraClient.get_camera)
    list_cameras = blocking(AsyncCameraClient.list_cameras)
    iter_cameras = iterating(AsyncCameraClient.iter_cameras)
    update_camera = blocking(AsyncCameraClient.update_camera)
    delete_camera = blocking(AsyncCameraClient.delete_camera)
    probe_camera = blocking(AsyncCameraClient.probe_camera)
    capture_snapshot = blocking(AsyncCameraClient.capture_snapshot)
    set_recording_policy = blocking(AsyncCameraClient.set_recording_policy)
    get_camera_timeline = blocking(AsyncCameraClient.get_camera_timeline)
    watch_camera = iterating(AsyncCameraClient.watch_camera)
    get_camera_live_stream = blocking(AsyncCameraClient.get_camera_live_stream)
    stream_camera_live = iterating(AsyncCameraClient.stream_camera_live)
    create_recording = blocking(AsyncCameraClient.create_recording)
    get_recording = blocking(AsyncCameraClient.get_recording)
    list_recordings = blocking(AsyncCameraClient.list_recordings)
    iter_recordings = iterating(AsyncCameraClient.iter_recordings)
    delete_recording = blocking(AsyncCameraClient.delete_recording)
    create_recording_upload_url = blocking(AsyncCameraClient.create_recording_upload_url)
