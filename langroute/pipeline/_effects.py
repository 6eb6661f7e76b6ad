"""One logic for sync and async: the pipeline yields effects, a driver carries them out.

The call pipeline is written once, as a generator that *yields* what it needs done (call this
model, wait this long, dispatch this event, ask this budget store) and receives the result.
``run_sync`` and ``run_async`` carry the same effects out with blocking or awaitable calls;
``stream_sync`` / ``stream_async`` also hand ``Deliver``-ed chunks to the consumer. This is
tenacity's ``iter()`` idea (the retry loop decides, ``Retrying`` / ``AsyncRetrying`` act) applied
to the whole call, so no step has a copied sync/async body.

An effect that raises is thrown back into the generator at the point that yielded it, so the
pipeline's own ``try``/``except`` sees provider errors exactly as straight-line code would. So
is a cancellation (``asyncio.CancelledError``: ``task.cancel()``, an ``asyncio.wait_for``
deadline) or an interruption (``KeyboardInterrupt``) that arrives mid-effect: the pipeline
frees what it holds (a budget reservation) and lets it go on, unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .._exceptions import CallTimeoutError
from ._types import Answer, ModelRef

__all__ = [
    "END_OF_STREAM",
    "Caller",
    "CallModel",
    "Collect",
    "Compute",
    "Deliver",
    "Dual",
    "Effect",
    "Emit",
    "Gather",
    "NextChunk",
    "OpenStream",
    "Pipeline",
    "Settle",
    "Sleep",
    "StreamClosed",
    "run_async",
    "run_sync",
    "stream_async",
    "stream_sync",
]

T = TypeVar("T")

#: What ``NextChunk`` returns when the stream is exhausted.
END_OF_STREAM: Any = object()


class Caller(Protocol):
    """What an adapter does for the pipeline: the framework-specific calls.

    ``call`` / ``acall`` answer with one model; ``stream`` / ``astream`` open its stream
    (an iterator of framework chunks); ``collect`` merges a stream's chunks into one ``Answer``;
    ``emit`` / ``aemit`` dispatch a trace event to the framework's callbacks. A caller may also
    define ``settle(last, record, merged)``: the closing chunk that hands a finished stream's
    final record to its consumer (see ``Settle``).
    """

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer: ...

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer: ...

    def stream(self, ref: ModelRef, purpose: str) -> Iterator[Any]: ...

    def astream(self, ref: ModelRef, purpose: str) -> AsyncIterator[Any]: ...

    def collect(self, ref: ModelRef, chunks: list[Any]) -> Answer: ...

    def stamp(self, raw: Any, record: dict[str, Any]) -> Any: ...

    def emit(self, name: str, payload: dict[str, Any]) -> None: ...

    async def aemit(self, name: str, payload: dict[str, Any]) -> None: ...


class Effect:
    """Something the pipeline needs done; ``run`` does it blocking, ``arun`` awaiting."""

    def run(self, caller: Caller) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    async def arun(self, caller: Caller) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement arun()")


#: A pipeline: a generator of effects that returns the call's result.
Pipeline = Generator[Effect, Any, T]


@dataclass(frozen=True)
class Compute(Effect):
    """CPU work (embedding, deciding): inline when sync, in a worker thread when async."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()

    def run(self, caller: Caller) -> Any:
        return self.fn(*self.args)

    async def arun(self, caller: Caller) -> Any:
        return await asyncio.to_thread(self.fn, *self.args)


@dataclass(frozen=True)
class Dual(Effect):
    """A step's own I/O, which it provides in both forms (e.g. a budget store's reserve)."""

    sync: Callable[..., Any]
    async_: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()

    def run(self, caller: Caller) -> Any:
        return self.sync(*self.args)

    async def arun(self, caller: Caller) -> Any:
        return await self.async_(*self.args)


@dataclass(frozen=True)
class CallModel(Effect):
    """One provider call, under a per-attempt deadline when ``timeout`` is set.

    Async calls are cancelled at the deadline. A blocking call cannot be interrupted: it runs in
    a worker thread that is abandoned at the deadline (the provider may still finish and bill it;
    its callbacks still report its usage).
    """

    ref: ModelRef
    purpose: str
    timeout: float | None = None
    messages: Any = None

    def run(self, caller: Caller) -> Answer:
        return _within(self.timeout, f"{self.ref.name} did not answer",
                       caller.call, self.ref, self.purpose, self.messages)

    async def arun(self, caller: Caller) -> Answer:
        return await _awithin(self.timeout, f"{self.ref.name} did not answer",
                              caller.acall(self.ref, self.purpose, self.messages))


def _within(timeout: float | None, what: str, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``; with a ``timeout``, in a worker thread (with this context's variables:
    callbacks) waited for that many seconds, then ``CallTimeoutError`` and the worker is left
    to finish alone (a blocking call cannot be interrupted)."""
    if timeout is None:
        return call(*args)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(contextvars.copy_context().run, call, *args)
    pool.shutdown(wait=False)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise CallTimeoutError(f"{what} within timeout={timeout:g} s") from None


async def _awithin(timeout: float | None, what: str, awaitable: Awaitable[T]) -> T:
    """``_within`` for a coroutine: cancelled at the deadline."""
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise CallTimeoutError(f"{what} within timeout={timeout:g} s") from None


@dataclass(frozen=True)
class OpenStream(Effect):
    """Open one provider stream (chunks are pulled with ``NextChunk``)."""

    ref: ModelRef
    purpose: str

    def run(self, caller: Caller) -> Iterator[Any]:
        return iter(caller.stream(self.ref, self.purpose))

    async def arun(self, caller: Caller) -> AsyncIterator[Any]:
        return aiter(caller.astream(self.ref, self.purpose))


@dataclass(frozen=True)
class NextChunk(Effect):
    """The next chunk of an open stream, or ``END_OF_STREAM``; with ``timeout``, waited for at
    most that long (sync and async alike)."""

    stream: Any
    timeout: float | None = None

    def run(self, caller: Caller) -> Any:
        # as CallModel: the wait is abandoned at the deadline, and the stream with it (nothing
        # reads it again, so the worker still in ``next`` is its only reader)
        return _within(self.timeout, "the stream sent nothing", next, self.stream,
                       END_OF_STREAM)

    async def arun(self, caller: Caller) -> Any:
        return await _awithin(self.timeout, "the stream sent nothing",
                              anext(self.stream, END_OF_STREAM))


@dataclass(frozen=True)
class Collect(Effect):
    """Merge a finished stream's chunks into one Answer (pure)."""

    ref: ModelRef
    chunks: list[Any] = field(default_factory=list)

    def run(self, caller: Caller) -> Answer:
        return caller.collect(self.ref, self.chunks)

    async def arun(self, caller: Caller) -> Answer:
        return caller.collect(self.ref, self.chunks)


@dataclass(frozen=True)
class Emit(Effect):
    """Dispatch a trace event to the framework's callbacks."""

    name: str
    payload: dict[str, Any]

    def run(self, caller: Caller) -> None:
        caller.emit(self.name, self.payload)

    async def arun(self, caller: Caller) -> None:
        await caller.aemit(self.name, self.payload)


@dataclass(frozen=True)
class Sleep(Effect):
    """Wait before the next attempt; ``sleep`` / ``asleep`` are injectable (tests record)."""

    seconds: float
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def run(self, caller: Caller) -> None:
        if self.seconds > 0:
            self.sleep(self.seconds)

    async def arun(self, caller: Caller) -> None:
        if self.seconds > 0:
            await self.asleep(self.seconds)


@dataclass(frozen=True)
class Gather(Effect):
    """Run several sub-pipelines at once (threads when sync, ``asyncio.gather`` when async);
    returns their results in order. Used by scorers that ask several verifiers in parallel.
    Sync and async alike, every sub-pipeline ends (and records its attempt) before the first
    error, in order, is raised: no verifier is left running after its call is over."""

    pipelines: tuple[Pipeline[Any], ...]

    def run(self, caller: Caller) -> list[Any]:
        if len(self.pipelines) == 1:
            return [run_sync(self.pipelines[0], caller)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.pipelines)) as pool:
            futures = [pool.submit(contextvars.copy_context().run, run_sync, p, caller)
                       for p in self.pipelines]
            return [f.result() for f in futures]

    async def arun(self, caller: Caller) -> list[Any]:
        results = await asyncio.gather(*(run_async(p, caller) for p in self.pipelines),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)


@dataclass(frozen=True)
class Deliver(Effect):
    """Hand a chunk to the consumer of a stream (only the stream drivers accept it); with
    ``stamp``, the adapter first attaches that call record to it."""

    chunk: Any
    stamp: dict[str, Any] | None = None

    def run(self, caller: Caller) -> None:
        raise TypeError("Deliver is only valid under stream_sync / stream_async")

    async def arun(self, caller: Caller) -> None:
        raise TypeError("Deliver is only valid under stream_sync / stream_async")

    def to_consumer(self, caller: Caller) -> Any:
        """The chunk the consumer gets (``_NOTHING``: none)."""
        return self.chunk if self.stamp is None else caller.stamp(self.chunk, self.stamp)


@dataclass(frozen=True)
class Settle(Deliver):
    """A finished stream's final record (``stamp``: attempts settled, with usage, latency and
    cost), handed to the consumer on a closing chunk the adapter makes from the last chunk
    delivered (``chunk``) and the delivered answer's merged raw value (``merged``: what
    ``Collect`` made of the chunks), so the stream ends with what ``invoke`` would have
    returned. A caller without ``settle``, or whose ``settle`` returns None, delivers nothing
    more."""

    merged: Any = None

    def to_consumer(self, caller: Caller) -> Any:
        settle = getattr(caller, "settle", None)
        closing = None if settle is None else settle(self.chunk, self.stamp, self.merged)
        return _NOTHING if closing is None else closing


_NOTHING: Any = object()


def run_sync(pipeline: Pipeline[T], caller: Caller) -> T:
    """Carry a pipeline out with blocking calls; returns its result."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = pipeline.throw(error) if error is not None else pipeline.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            value, error = effect.run(caller), None
        except BaseException as exc:  # thrown back into the pipeline, which decides
            value, error = None, exc


async def run_async(pipeline: Pipeline[T], caller: Caller) -> T:
    """Carry a pipeline out with awaitable calls; returns its result."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = pipeline.throw(error) if error is not None else pipeline.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            value, error = await effect.arun(caller), None
        except BaseException as exc:  # a cancellation too: the pipeline frees what it holds
            value, error = None, exc


class StreamClosed(Exception):
    """Thrown into a streaming pipeline when its consumer stops early (``close()`` / ``break``),
    so the pipeline can settle what it holds before it ends: a provider call still streaming
    is settled as abandoned (its budget reservation released before its first chunk, else
    charged an estimate of what the provider billed) and the stream is recorded."""


def stream_sync(pipeline: Pipeline[Any], caller: Caller) -> Iterator[Any]:
    """Carry a streaming pipeline out, yielding each ``Deliver``-ed chunk to the consumer."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = pipeline.throw(error) if error is not None else pipeline.send(value)
        except StopIteration:
            return
        if isinstance(effect, Deliver):
            value, error = None, None
            chunk = effect.to_consumer(caller)
            if chunk is _NOTHING:
                continue
            try:
                yield chunk
            except GeneratorExit:
                _clean_up_sync(pipeline, caller)
                raise
            continue
        try:
            value, error = effect.run(caller), None
        except BaseException as exc:
            value, error = None, exc


async def stream_async(pipeline: Pipeline[Any], caller: Caller) -> AsyncIterator[Any]:
    """``stream_sync`` with awaitable calls."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = pipeline.throw(error) if error is not None else pipeline.send(value)
        except StopIteration:
            return
        if isinstance(effect, Deliver):
            value, error = None, None
            chunk = effect.to_consumer(caller)
            if chunk is _NOTHING:
                continue
            try:
                yield chunk
            except GeneratorExit:
                await _clean_up_async(pipeline, caller)
                raise
            continue
        try:
            value, error = await effect.arun(caller), None
        except BaseException as exc:  # a cancellation too: the pipeline frees what it holds
            value, error = None, exc


def _after_close(pipeline: Pipeline[Any]) -> Pipeline[None]:
    """The rest of a pipeline whose consumer left: ``StreamClosed`` is thrown in, its clean-up
    effects (a budget release) pass through, chunks it still delivers are dropped."""
    error: BaseException | None = StreamClosed("the consumer closed the stream")
    value: Any = None
    while True:
        try:
            effect = pipeline.throw(error) if error is not None else pipeline.send(value)
        except (StopIteration, StreamClosed):
            return
        if isinstance(effect, Deliver):
            value, error = None, StreamClosed("the consumer closed the stream")
            continue
        try:
            value, error = (yield effect), None
        except GeneratorExit:
            raise
        except BaseException as exc:  # a cancellation of the clean-up: the pipeline settles
            value, error = None, exc


def _clean_up_sync(pipeline: Pipeline[Any], caller: Caller) -> None:
    run_sync(_after_close(pipeline), caller)


async def _clean_up_async(pipeline: Pipeline[Any], caller: Caller) -> None:
    await run_async(_after_close(pipeline), caller)
