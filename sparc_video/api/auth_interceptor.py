"""The grpc.aio server interceptor that authenticates every call and enforces `roles.py`.

Before a handler runs: credentials → Principal (`auth.Authenticator`), the method's least role
(`roles.METHOD_ROLES`; a method missing from the table is refused), then the principal's request
rate (`quota.RateLimiter`). The principal is then available to the handler through
`auth.current_principal()`. Health (and reflection while GRPC_REFLECTION=public) skip all this.
Placed inside the tracing, metrics and error interceptors: refusals are domain errors that the
error interceptor answers, and refused calls are counted and traced too.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry import trace

from sparc_video.api.interceptors import wrap_handler
from sparc_video.core.errors import PermissionDenied
from sparc_video.observability import logs as logging_setup
from sparc_video.security import auth
from sparc_video.security.quota import RateLimiter
from sparc_video.security.roles import METHOD_ROLES, PUBLIC_METHODS, REFLECTION_METHODS, Role

Context = grpc.aio.ServicerContext[Any, Any]
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: auth.Authenticator,
        limiter: RateLimiter | None,
        *,
        reflection: str = "public",
    ) -> None:
        self._authenticator = authenticator
        self._limiter = None if authenticator.disabled else limiter
        self._public = set(PUBLIC_METHODS)
        self._roles = dict(METHOD_ROLES)
        if reflection == "public":
            self._public |= REFLECTION_METHODS
        else:
            self._roles.update(dict.fromkeys(REFLECTION_METHODS, Role.VIEWER))

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in self._public:
            return handler
        admit = self._admission(method, handler_call_details.invocation_metadata)
        return wrap_handler(handler, lambda behavior, _: _guard(behavior, admit))

    def _admission(
        self, method: str, metadata: Any
    ) -> Callable[[Context], Awaitable[auth.Principal]]:
        needed = self._roles.get(method)

        async def admit(context: Context) -> auth.Principal:
            principal = (
                auth.LOCAL_ADMIN
                if self._authenticator.disabled
                else self._authenticator.authenticate(metadata, context.peer_identities())
            )
            if needed is None:
                raise PermissionDenied(
                    f"{method} is not in the authorization table (security/roles.py)"
                )
            if not principal.has_role(needed):
                held = f"the {principal.role} role" if principal.role else "no role"
                raise PermissionDenied(
                    f"{principal.id!r} has {held}; {method.rsplit('/', 1)[-1]} needs "
                    f"{needed} or above"
                )
            if self._limiter is not None:
                await self._limiter.hit(principal.id)
            # Who did it, on the RPC's log lines and span (the observability interceptor's).
            logging_setup.update(principal=principal.id)
            span = trace.get_current_span()
            span.set_attribute("enduser.id", principal.id)
            span.set_attribute("enduser.role", str(principal.role or ""))
            return principal

        return admit


def _guard(
    behavior: Callable[..., Any], admit: Callable[[Context], Awaitable[auth.Principal]]
) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def guarded_gen(request: Any, context: Context) -> AsyncIterator[Any]:
            token = auth.set_principal(await admit(context))
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                auth.reset_principal(token)

        return guarded_gen

    async def guarded(request: Any, context: Context) -> Any:
        token = auth.set_principal(await admit(context))
        try:
            return await behavior(request, context)
        finally:
            auth.reset_principal(token)

    return guarded
