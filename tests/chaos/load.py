"""Steady traffic while something breaks: every answer (or its absence) recorded with its time.

A stream is one kind of request sent every `interval` seconds from its own thread and connection. Daraja is a
stream of its own (`DarajaSender`): it posts each callback until it gets a 2xx, as Daraja retries a
callback that was not acknowledged.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class Sample:
    stream: str
    at: float  # time.monotonic() when sent
    seconds: float  # until the answer, or until the request failed
    status: int | None  # None: no HTTP answer (timeout, connection refused or reset)
    retry_after: str | None = None
    content_type: str = ""
    error_code: str = ""  # {"error": {"code": ...}} of a JSON error body

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _sample(stream: str, at: float, response: requests.Response | None) -> Sample:
    seconds = time.monotonic() - at
    if response is None:
        return Sample(stream, at, seconds, None)
    error_code = ""
    if "json" in response.headers.get("Content-Type", "") and response.status_code >= 400:
        try:
            error_code = str(response.json().get("error", {}).get("code", ""))
        except (ValueError, AttributeError):
            error_code = "<unreadable>"
    return Sample(
        stream,
        at,
        seconds,
        response.status_code,
        response.headers.get("Retry-After"),
        response.headers.get("Content-Type", ""),
        error_code,
    )


@dataclass
class Load:
    samples: list[Sample] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def stream(
        self,
        name: str,
        call: Callable[[requests.Session], requests.Response],
        *,
        interval: float,
        session: requests.Session | None = None,
    ) -> None:
        def run() -> None:
            own = session or requests.Session()
            next_at = time.monotonic()
            while not self._stop.is_set():
                at = time.monotonic()
                try:
                    response = call(own)
                except requests.RequestException:
                    response = None
                self.record(_sample(name, at, response))
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))

        self._threads.append(threading.Thread(target=run, name=f"load-{name}", daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)

    def of(
        self, stream: str | None = None, *, since: float = 0.0, until: float = float("inf")
    ) -> list[Sample]:
        with self._lock:
            return [
                s for s in self.samples if (stream is None or s.stream == stream) and since <= s.at <= until
            ]

    def statuses(self, stream: str | None = None, **window) -> collections.Counter:
        return collections.Counter(s.status for s in self.of(stream, **window))


@dataclass
class Delivery:
    """One callback, posted until acknowledged: every attempt's status (None: no HTTP answer)."""

    key: str
    body: dict
    attempts: list[Sample] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].ok


class DarajaSender:
    """Posts callbacks one every `interval` seconds, each retried every `retry_every` seconds until a 2xx
    (for at most `give_up_after` seconds), like Daraja retrying a callback it could not deliver."""

    def __init__(
        self,
        load: Load,
        url: str,
        deliveries: list[Delivery],
        *,
        interval: float,
        retry_every: float = 1.0,
        give_up_after: float = 90.0,
    ):
        self.load, self.url, self.deliveries = load, url, deliveries
        self.interval, self.retry_every, self.give_up_after = interval, retry_every, give_up_after
        self._threads: list[threading.Thread] = []

    def _deliver(self, delivery: Delivery) -> None:
        session = requests.Session()
        first = time.monotonic()
        while time.monotonic() - first < self.give_up_after:
            at = time.monotonic()
            try:
                response = session.post(self.url, json=delivery.body, timeout=REQUEST_TIMEOUT)
            except requests.RequestException:
                response = None
            sample = _sample("callback", at, response)
            delivery.attempts.append(sample)
            self.load.record(sample)
            if sample.ok:
                return
            time.sleep(self.retry_every)

    def start(self) -> None:
        def run() -> None:
            for delivery in self.deliveries:
                thread = threading.Thread(target=self._deliver, args=(delivery,), daemon=True)
                self._threads.append(thread)
                thread.start()
                time.sleep(self.interval)

        launcher = threading.Thread(target=run, name="daraja-sender", daemon=True)
        self._threads.append(launcher)
        launcher.start()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        while len(self._threads) < len(self.deliveries) + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return all(delivery.acknowledged for delivery in self.deliveries)
