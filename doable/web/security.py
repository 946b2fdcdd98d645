"""The bearer-token dependency for REST routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from doable.platform.auth import Identity, InvalidToken
from doable.platform.logs import bind
from doable.web.deps import VerifierDep


async def authenticated(request: Request, verifier: VerifierDep) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("missing bearer token")
    identity: Identity = await verifier.verify(token.strip())
    bind(user_id=identity.user_id)
    return identity


CurrentUser = Annotated[Identity, Depends(authenticated)]
