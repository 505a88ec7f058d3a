"""The streaming Subscription channels: R4 websocket and Server-Sent Events (docs/subscriptions.md).

- `GET {base}/websocket` upgraded to a WebSocket (https://hl7.org/fhir/R4/subscription.html#2.46.7.2):
  the client sends `bind <Subscription id>`, the server answers `bound <id>` and then sends
  `ping <id>` for each notification; `ping <anything>` from the client is answered `pong <anything>`.
  The bearer token goes in the upgrade request's Authorization header.
- `GET {base}/_subscriptions/{id}/events` as `text/event-stream`
  (https://html.spec.whatwg.org/multipage/server-sent-events.html): one event per notification, its
  `id` the event number, `Last-Event-ID` resumes after it; a comment every 15 s keeps it open.

- `$status` (type and instance level) and `$events` (instance) of the Subscriptions Backport IG
  (operations/subscription_status.py, subscription_events.py), and `$topic-list` (type;
  operations/subscription_topic_list.py), GET or POST.

Only the Subscription's owner binds to it (`subscriptions/stream.py`); the connection reads the
Subscription's queue itself, woken when this process queued something, else every second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from .. import input_limits
from ..errors import FhirError
from ..operations import subscription_events, subscription_status, subscription_topic_list
from ..subscriptions import stream
from .deps import Ctx, get_principal
from .operation_call import answer

router = APIRouter()
BOTH = ["GET", "POST"]
LOOK_SECONDS = 1.0  # read the queue at least this often (another process may have queued)
HEARTBEAT_SECONDS = 15.0


async def _notifications(
    store: Any, binding: stream.Binding, alive: Any = None
) -> AsyncIterator[list[stream.Notification]]:
    """Batches of notifications as they come (an empty batch at each heartbeat interval)."""
    seen, looked, beat = -1, 0.0, time.monotonic()
    period = binding.heartbeat or HEARTBEAT_SECONDS
    while alive is None or await alive():
        now = time.monotonic()
        if stream.generation() != seen or now - looked >= LOOK_SECONDS:
            seen, looked = stream.generation(), now
            batch = await run_in_threadpool(stream.take, store, binding)
            if batch:
                beat = now
                yield batch
                continue
        if now - beat >= period:
            beat = now
            yield []
        await asyncio.sleep(0.02)


@router.websocket("/websocket")
async def websocket_channel(websocket: WebSocket) -> None:
    """The R4 websocket channel: `bind <id>` -> `bound <id>`, then `ping <id>` per notification."""
    await websocket.accept()
    try:
        principal = await get_principal(websocket)  # type: ignore[arg-type]
    except FhirError as exc:
        await websocket.send_text(f"error {exc.message}")
        await websocket.close(code=1008)
        return
    store = websocket.app.state.context.store
    pump: asyncio.Task[None] | None = None

    async def send_pings(binding: stream.Binding) -> None:
        async for batch in _notifications(store, binding):
            for _ in batch:
                await websocket.send_text(f"ping {binding.sub_id}")

    try:
        while True:
            command, _, argument = (await websocket.receive_text()).strip().partition(" ")
            argument = argument.strip()
            if command == "bind":
                try:
                    binding = await run_in_threadpool(
                        stream.bind, store, principal, argument, "websocket", None
                    )
                except FhirError as exc:
                    await websocket.send_text(f"error {exc.message}")
                    continue
                if pump is not None:
                    pump.cancel()
                await websocket.send_text(f"bound {argument}")
                pump = asyncio.create_task(send_pings(binding))
            elif command == "ping":
                await websocket.send_text(f"pong {argument}")
            else:
                await websocket.send_text("error expected 'bind <Subscription id>'")
    except WebSocketDisconnect:
        pass
    finally:
        if pump is not None:
            pump.cancel()


@router.get("/_subscriptions/{sub_id}/events")
async def server_sent_events(request: Request, sub_id: str) -> StreamingResponse:
    """The Server-Sent Events channel of one Subscription (its owner's EventSource)."""
    principal = await get_principal(request)
    store = request.app.state.context.store
    last = request.headers.get("last-event-id")
    after = input_limits.integer(last, "Last-Event-ID") if last else None
    binding = await run_in_threadpool(stream.bind, store, principal, sub_id, "sse", after)

    async def alive() -> bool:
        return not await request.is_disconnected()

    async def events() -> AsyncIterator[bytes]:
        yield f": bound Subscription/{sub_id}\n\n".encode()
        if binding.topic:
            yield await run_in_threadpool(stream.status_event, store, binding, "handshake")
        async for batch in _notifications(store, binding, alive):
            if not batch and binding.topic:
                yield await run_in_threadpool(stream.status_event, store, binding, "heartbeat")
            elif not batch:
                yield b": heartbeat\n\n"
            for note in batch:
                yield stream.sse_event(sub_id, note)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.api_route("/Subscription/$topic-list", methods=BOTH)
async def topic_list(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, subscription_topic_list.topic_list)


@router.api_route("/Subscription/$status", methods=BOTH)
async def status_type(request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, subscription_status.status)


@router.api_route("/Subscription/{res_id}/$status", methods=BOTH)
async def status_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, subscription_status.status, res_id)


@router.api_route("/Subscription/{res_id}/$events", methods=BOTH)
async def events_instance(res_id: str, request: Request, ctx: Ctx) -> Response:
    return await answer(request, ctx, subscription_events.events, res_id)
