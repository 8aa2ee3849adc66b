"""OpenAI Responses API: a stream's final answer, and a full answer spelled out as a stream.

Stream → full: the ``response`` of the final ``response.completed`` / ``response.incomplete``
event (it carries the whole answer, usage included).

Full → stream: the event sequence the API sends and the openai SDK's ``ResponseStreamState``
checks, numbered by ``sequence_number``::

    response.created, response.in_progress            (the response, in progress, no output)
    per output item: response.output_item.added       (the item, in progress, empty)
        message:       per content part: response.content_part.added,
                       output_text: response.output_text.delta, one
                       response.output_text.annotation.added per annotation,
                       response.output_text.done; refusal: response.refusal.delta/.done;
                       response.content_part.done
        function_call: response.function_call_arguments.delta/.done
        custom_tool_call: response.custom_tool_call_input.delta/.done
        reasoning:     per summary part: response.reasoning_summary_part.added,
                       response.reasoning_summary_text.delta/.done,
                       response.reasoning_summary_part.done; per content part:
                       response.content_part.added, response.reasoning_text.delta/.done,
                       response.content_part.done
        (any other item type: added and done only)
    response.output_item.done                          (the item as stored)
    response.completed | response.incomplete           (the stored response)
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from llm_cache.providers.sse import SSEEvent

__all__ = ["FINAL_EVENTS", "response_events", "response_of", "stream_finished"]

#: Final event type by stored status (only these answers are stored).
FINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete"}
#: Fields of the response that only hold once it is finished (``None`` while in progress).
_FINISHED_ONLY = ("usage", "incomplete_details", "completed_at", "error")


def event_type(event: SSEEvent) -> str | None:
    if event.event is not None:
        return event.event
    try:
        obj = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else None


def stream_finished(events: list[SSEEvent]) -> bool:
    finished = False
    for event in events:
        kind = event_type(event)
        if kind in ("error", "response.failed"):
            return False
        if kind in FINAL_EVENTS.values():
            finished = True
    return finished


def response_of(events: list[SSEEvent]) -> dict[str, Any] | None:
    """The response the last final event carries."""
    for event in reversed(events):
        if event.event not in (None, *FINAL_EVENTS.values()):
            continue
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if (
            isinstance(obj, dict)
            and obj.get("type") in FINAL_EVENTS.values()
            and isinstance(obj.get("response"), dict)
        ):
            response: dict[str, Any] = obj["response"]
            return response
    return None


class _Events:
    def __init__(self) -> None:
        self.events: list[SSEEvent] = []
        self._seq = itertools.count()

    def add(self, kind: str, **fields: Any) -> None:
        obj = {"type": kind, **fields, "sequence_number": next(self._seq)}
        self.events.append(SSEEvent.from_json(obj, event=kind))


def response_events(response: dict[str, Any]) -> list[SSEEvent] | None:
    """A stored full response as its stream; ``None`` when it is not a finished response."""
    output = response.get("output")
    final = FINAL_EVENTS.get(response.get("status") or "completed")
    if not isinstance(output, list) or final is None or "id" not in response:
        return None
    if not all(isinstance(item, dict) for item in output):
        return None
    out = _Events()
    pending = {**response, "status": "in_progress", "output": []}
    for key in _FINISHED_ONLY:
        if key in pending:
            pending[key] = None
    out.add("response.created", response=pending)
    out.add("response.in_progress", response=pending)
    for index, item in enumerate(output):
        _item_events(out, index, item)
    out.add(final, response=response)
    return out.events


def _item_events(out: _Events, index: int, item: dict[str, Any]) -> None:
    kind = item.get("type")
    item_id = item.get("id")
    at = {"item_id": item_id, "output_index": index}
    started = {**item, "status": "in_progress"} if "status" in item else dict(item)
    if kind == "message":
        out.add("response.output_item.added", output_index=index, item={**started, "content": []})
        for c, part in enumerate(item.get("content") or ()):
            _message_part_events(out, at, c, part)
    elif kind == "function_call":
        out.add("response.output_item.added", output_index=index, item={**started, "arguments": ""})
        arguments = item.get("arguments") or ""
        if arguments:
            out.add("response.function_call_arguments.delta", **at, delta=arguments)
        out.add("response.function_call_arguments.done", **at, arguments=arguments)
    elif kind == "custom_tool_call":
        out.add("response.output_item.added", output_index=index, item={**started, "input": ""})
        text = item.get("input") or ""
        if text:
            out.add("response.custom_tool_call_input.delta", **at, delta=text)
        out.add("response.custom_tool_call_input.done", **at, input=text)
    elif kind == "reasoning":
        empty = {**started, "summary": []}
        if "content" in item:
            empty["content"] = []
        out.add("response.output_item.added", output_index=index, item=empty)
        for s, part in enumerate(item.get("summary") or ()):
            text = (part.get("text") or "") if isinstance(part, dict) else ""
            where = {**at, "summary_index": s}
            out.add(
                "response.reasoning_summary_part.added",
                **where,
                part={**part, "text": ""} if isinstance(part, dict) else part,
            )
            if text:
                out.add("response.reasoning_summary_text.delta", **where, delta=text)
            out.add("response.reasoning_summary_text.done", **where, text=text)
            out.add("response.reasoning_summary_part.done", **where, part=part)
        for c, part in enumerate(item.get("content") or ()):
            text = (part.get("text") or "") if isinstance(part, dict) else ""
            where = {**at, "content_index": c}
            out.add(
                "response.content_part.added",
                **where,
                part={**part, "text": ""} if isinstance(part, dict) else part,
            )
            if text:
                out.add("response.reasoning_text.delta", **where, delta=text)
            out.add("response.reasoning_text.done", **where, text=text)
            out.add("response.content_part.done", **where, part=part)
    else:
        out.add("response.output_item.added", output_index=index, item=started)
    out.add("response.output_item.done", output_index=index, item=item)


def _message_part_events(out: _Events, at: dict[str, Any], c: int, part: Any) -> None:
    where = {**at, "content_index": c}
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "output_text":
        text = part.get("text") or ""
        logprobs = part.get("logprobs") or []
        empty = {**part, "text": "", "annotations": []}
        if "logprobs" in part:
            empty["logprobs"] = []
        out.add("response.content_part.added", **where, part=empty)
        if text:
            out.add("response.output_text.delta", **where, delta=text, logprobs=logprobs)
        for a, annotation in enumerate(part.get("annotations") or ()):
            out.add(
                "response.output_text.annotation.added",
                **where,
                annotation_index=a,
                annotation=annotation,
            )
        out.add("response.output_text.done", **where, text=text, logprobs=logprobs)
    elif kind == "refusal":
        refusal = part.get("refusal") or ""
        out.add("response.content_part.added", **where, part={**part, "refusal": ""})
        if refusal:
            out.add("response.refusal.delta", **where, delta=refusal)
        out.add("response.refusal.done", **where, refusal=refusal)
    else:
        out.add("response.content_part.added", **where, part=part)
    out.add("response.content_part.done", **where, part=part)
