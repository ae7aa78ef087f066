"""Fault schedules: apply each :class:`~proxies.faults.Fault` at its offset, undo it after.

:class:`FaultSchedule` runs a list of faults as an **asyncio task in the orchestrator's parent
process**: ``await schedule.run(start_ns)`` sleeps until each offset (measured from
``start_ns``, a ``time.perf_counter_ns()`` value, the clock of ``ops.start_ns``), makes the
Toxiproxy call in a private one-thread executor so that the event loop never blocks on HTTP,
and reports each change through ``on_event(name, fields)`` on the event loop's thread:

- ``fault_start`` once the toxic is in place (or the proxy disabled);
- ``fault_end`` once it is removed (or the proxy re-enabled), with ``reason`` ``duration``,
  ``cancelled`` or ``error``;
- ``fault_error`` when Toxiproxy refused a change (the run then gets the :class:`ProxyError`).

Fields: ``fault`` (index), the fault itself (:meth:`Fault.to_dict`: ``label``, ``proxy``,
``toxic``, ``stream``, ``attributes``, ``toxicity``, ``at_s``, ``duration_s``), ``offset_s``
(actual offset), ``t_ns`` (``perf_counter_ns()`` when the change took effect), ``toxics``
(names in Toxiproxy).

Whatever ends the task - its last fault, cancellation, an error - every fault it started is
undone before ``run`` returns or raises (an HTTP call in flight is waited for first, so nothing
lands after the clean-up). ``cleanup()`` does the same synchronously and is idempotent.

Overlapping faults are independent; ``down`` faults on one proxy are counted, so the proxy is
re-enabled only when the last of them ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from proxies.errors import ProxyConfigError, ProxyError, UnknownProxyError
from proxies.faults import Fault
from proxies.routes import ROUTE_NAMES
from proxies.toxiproxy.client import ToxiproxyClient

FAULT_TOXIC_PREFIX = "pgcache-fault"
EventCallback = Callable[[str, dict[str, Any]], None]


class FaultSchedule:
    """Runs faults against a Toxiproxy server at their offsets; always cleans up."""

    def __init__(self, client: ToxiproxyClient, faults: Sequence[Fault],
                 on_event: EventCallback, *, toxic_prefix: str = FAULT_TOXIC_PREFIX) -> None:
        if not isinstance(client, ToxiproxyClient):
            raise ProxyConfigError(f"client must be a ToxiproxyClient, found {client!r}")
        faults = list(faults)
        for i, fault in enumerate(faults):
            if not isinstance(fault, Fault):
                raise ProxyConfigError(f"faults[{i}] must be a Fault, found {fault!r}")
        if not callable(on_event):
            raise ProxyConfigError("on_event must be callable(name, fields)")
        self.client = client
        self.faults = faults
        self.on_event = on_event
        self.toxic_prefix = toxic_prefix
        self._lock = threading.Lock()
        self._active: dict[int, list[str]] = {}  # fault index -> toxic names it added
        self._down: dict[str, int] = {}  # proxy -> number of active "down" faults
        self._start_ns = time.perf_counter_ns()
        self._inflight: Future[dict[str, Any]] | None = None
        self._inflight_kind: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None  # what ended a threaded run early, if anything

    def check(self) -> None:
        """Raise :class:`UnknownProxyError` if a fault names a proxy Toxiproxy does not have."""
        known = self.client.proxies()
        missing = sorted({f.proxy_name for f in self.faults} - set(known))
        if missing:
            raise UnknownProxyError(
                f"the fault schedule names proxies Toxiproxy at {self.client.url} does not "
                f"have: {', '.join(missing)}",
                detail=f"it has: {', '.join(sorted(known)) or 'none'}",
                hint=f"use {', '.join(ROUTE_NAMES)} (the run's proxies) or the name of a "
                     "proxy in proxies/toxiproxy.json")

    async def run(self, start_ns: int | None = None) -> None:
        """Apply each fault at ``start_ns`` + ``at_s`` and undo it ``duration_s`` later."""
        self._start_ns = time.perf_counter_ns() if start_ns is None else start_ns
        timeline = sorted(
            [(f.at_s, 1, i) for i, f in enumerate(self.faults)]
            + [(f.at_s + f.duration_s, 0, i) for i, f in enumerate(self.faults)])
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgcache-faults")
        reason = "error"
        try:
            await self._perform(executor, "check", -1)
            for offset, is_start, index in timeline:
                wait_ns = self._start_ns + int(offset * 1e9) - time.perf_counter_ns()
                if wait_ns > 0:
                    await asyncio.sleep(wait_ns / 1e9)
                await self._perform(executor, "start" if is_start else "end", index)
            reason = "duration"
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            self._settle_inflight()
            executor.shutdown(wait=False)
            self.cleanup(reason)

    async def _perform(self, executor: ThreadPoolExecutor, kind: str, index: int) -> None:
        action = {"check": lambda _: self._checked(), "start": self._start,
                  "end": lambda i: self._end(i, "duration")}[kind]
        future = executor.submit(action, index)
        self._inflight, self._inflight_kind = future, (kind, index)
        try:
            fields = await asyncio.wrap_future(future)
        except ProxyError as exc:
            self._inflight = None
            if kind != "check":
                self._emit("fault_error", dict(self._fields(index), action=kind,
                                               error=str(exc)))
            raise
        self._inflight = None
        if kind != "check":
            self._emit(f"fault_{kind}", fields)

    def start_in_thread(self, start_ns: int | None = None) -> None:
        """Run the schedule in a thread of its own (its own event loop); see :meth:`stop`.

        For a caller without a running event loop. ``on_event`` is then called from that
        thread.
        """
        if self._thread is not None:
            raise ProxyConfigError("this fault schedule was already started")
        start = time.perf_counter_ns() if start_ns is None else start_ns
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            task = loop.create_task(self.run(start))
            self._thread_loop, self._thread_task = loop, task
            ready.set()
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # reported through .error / stop()
                self.error = exc
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="pgcache-fault-schedule",
                                        daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self, timeout_s: float = 10.0) -> list[str]:
        """Stop a threaded run: cancel it, wait for its clean-up; returns problems met."""
        thread, loop, task = self._thread, self._thread_loop, self._thread_task
        if thread is not None and loop is not None and task is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop finished meanwhile
                loop.call_soon_threadsafe(task.cancel)
            thread.join(timeout_s)
        problems = [] if thread is None or not thread.is_alive() else [
            f"the fault schedule thread did not stop within {timeout_s} s"]
        return problems + self.cleanup("cancelled")

    def _checked(self) -> dict[str, Any]:
        self.check()
        return {}

    def _settle_inflight(self) -> None:
        # A call still running in the executor (the task was cancelled while awaiting it) is
        # waited for, so that the clean-up below sees - and undoes - whatever it did.
        future, kind = self._inflight, self._inflight_kind
        self._inflight = None
        if future is None or kind is None:
            return
        try:
            fields = future.result(timeout=self.client.timeout_s * 4)
        except BaseException:  # not run, or failed: cleanup below reports what remains
            return
        if kind[0] in ("start", "end"):
            self._emit(f"fault_{kind[0]}", fields)

    def _fields(self, index: int) -> dict[str, Any]:
        now = time.perf_counter_ns()
        return {"fault": index, **self.faults[index].to_dict(),
                "offset_s": round((now - self._start_ns) / 1e9, 6), "t_ns": now}

    def _start(self, index: int) -> dict[str, Any]:
        fault = self.faults[index]
        proxy = fault.proxy_name
        if fault.toxic == "down":
            with self._lock:
                self._active[index] = []
                first = self._down.get(proxy, 0) == 0
                self._down[proxy] = self._down.get(proxy, 0) + 1
            try:
                if first:
                    self.client.set_enabled(proxy, False)
            except BaseException:
                with self._lock:
                    self._active.pop(index, None)
                    self._down[proxy] -= 1
                raise
            return dict(self._fields(index), toxics=[])
        names: list[str] = []
        with self._lock:
            self._active[index] = names
        try:
            for stream in fault.streams:
                name = f"{self.toxic_prefix}-{index}-{fault.toxic}-{stream}"
                names.append(name)  # before the call: a timed-out request may still land
                self.client.add_toxic(proxy, name=name, type=fault.toxic, stream=stream,
                                      attributes=fault.attributes, toxicity=fault.toxicity)
        except BaseException:
            # A fault that did not start has no end: undo what part of it may exist.
            with self._lock:
                self._active.pop(index, None)
            for name in names:
                with contextlib.suppress(ProxyError):
                    self.client.remove_toxic(proxy, name, missing_ok=True)
            raise
        return dict(self._fields(index), toxics=list(names))

    def _end(self, index: int, reason: str) -> dict[str, Any]:
        fault = self.faults[index]
        proxy = fault.proxy_name
        with self._lock:
            names = self._active.pop(index, None)
            if names is None:
                return {}
            last_down = False
            if fault.toxic == "down":
                self._down[proxy] -= 1
                last_down = self._down[proxy] == 0
        if fault.toxic == "down":
            if last_down:
                self.client.set_enabled(proxy, True)
        else:
            for name in names:
                self.client.remove_toxic(proxy, name, missing_ok=True)
        return dict(self._fields(index), toxics=names, reason=reason)

    def cleanup(self, reason: str = "cancelled") -> list[str]:
        """Undo every active fault now (idempotent); returns the problems met."""
        problems: list[str] = []
        with self._lock:
            active = sorted(self._active)
        for index in active:
            try:
                fields = self._end(index, reason)
            except ProxyError as exc:
                problems.append(f"fault {index}: {exc.args[0]}")
                self._emit("fault_error", dict(self._fields(index), action="end",
                                               error=str(exc)))
                continue
            if fields:
                self._emit("fault_end", fields)
        return problems

    def _emit(self, name: str, fields: dict[str, Any]) -> None:
        if fields:
            self.on_event(name, fields)

    @property
    def active(self) -> list[int]:
        """Indexes of the faults currently applied."""
        with self._lock:
            return sorted(self._active)
