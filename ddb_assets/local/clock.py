"""The local world's clock: real time by default, movable for tests and demos.

Incremental exports need windows of at least 15 minutes and the PITR window is days long; waiting
for them in real time is not an option. Everything in the emulator that reads "now" (write
history timestamps, the PITR window, export start and end times, ExportTime/ExportToTime checks,
ClientToken expiry) reads :data:`clock` instead of ``time.time()``, so moving it moves the whole
world at once. moto's own timestamps (table ``CreationDateTime``, S3 ``LastModified``) stay on the
wall clock: nothing in the export path depends on them.

The clock lives in the process that serves the world. Another process (``dagster dev`` against
``ddb-assets emulator``) drives it over HTTP: ``GET``/``POST /moto-api/ddb-assets/clock``, or
:class:`ClockClient`, which has the same methods as :class:`WorldClock`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import datetime, timezone
from typing import Any

import requests

CLOCK_PATH = "/moto-api/ddb-assets/clock"


class WorldClock:
    """Epoch seconds for the local world: the wall clock plus an offset, or frozen at an instant.

    Time never runs backwards through :meth:`advance`, :meth:`set` or :meth:`real_time`
    (DynamoDB's history only grows); :meth:`reset`, a fresh world's clock, is the one way back
    (moto's reset, the end of a test). Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0  # seconds added to the wall clock while flowing
        self._frozen_at: float | None = None  # the instant the clock stands still at, if frozen

    def now(self) -> float:
        """The world's current time, epoch seconds (fractional)."""
        with self._lock:
            return self._now()

    def datetime(self) -> datetime:
        """:meth:`now` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), timezone.utc)

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_at is not None

    def advance(self, seconds: float, *, frozen: bool | None = None) -> float:
        """Jump ``seconds`` (>= 0) ahead. ``frozen``: True stands still at the new instant, False
        flows from it, None (the default) keeps the clock as it is (frozen or flowing); so
        ``advance(0, frozen=True)`` freezes the clock at its present instant, in one step.
        Returns the new now. Raises ValueError for a negative or infinite step."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"the clock only moves forward; cannot advance by {seconds} seconds")
        with self._lock:
            target = self._now() + seconds
            if frozen if frozen is not None else self._frozen_at is not None:
                self._frozen_at = target
            else:
                self._frozen_at, self._offset = None, target - time.time()
            return self._now()

    def set(self, epoch: float, *, frozen: bool = False) -> float:
        """Jump to ``epoch`` (epoch seconds, not before now). ``frozen``: stand still there (every
        write gets exactly that time until the next move), else keep flowing from it. Returns the
        new now. Raises ValueError for an instant in the clock's past."""
        if not math.isfinite(epoch):
            raise ValueError(f"cannot set the clock to {epoch}")
        with self._lock:
            current = self._now()
            if epoch < current:
                raise ValueError(f"the clock only moves forward; {_iso(epoch)} is before now ({_iso(current)})")
            if frozen:
                self._frozen_at = float(epoch)
            else:
                self._frozen_at = None
                self._offset = epoch - time.time()
            return self._now()

    def real_time(self) -> float:
        """Flow with the wall clock again, never stepping back: a clock at or behind the wall
        clock (a frozen one falls behind) joins it; a clock ahead of it (moved forward) flows on
        from where it is, keeping its lead, since going back would rewrite history. Returns the
        new now; :meth:`state`'s ``offset`` says how far ahead it stays."""
        with self._lock:
            current = self._now()
            self._frozen_at, self._offset = None, max(0.0, current - time.time())
            return self._now()

    def reset(self) -> float:
        """A fresh world's clock: the wall clock, flowing, even if that steps back in time. For
        moto's reset (``/moto-api/reset``: every table is gone) and the end of a test; tables
        written meanwhile keep their history (later writes are stamped no earlier than their
        last one), so use fresh tables afterwards. Returns the new now."""
        with self._lock:
            self._offset, self._frozen_at = 0.0, None
            return self._now()

    def state(self) -> dict[str, Any]:
        """``{"now": epoch seconds, "iso": "...Z", "frozen": bool, "offset": seconds ahead of the wall clock}``."""
        with self._lock:
            now = self._now()
            return {"now": now, "iso": _iso(now), "frozen": self._frozen_at is not None,
                    "offset": now - time.time()}

    def _now(self) -> float:
        return self._frozen_at if self._frozen_at is not None else time.time() + self._offset


clock = WorldClock()
"""The clock of the world served by this process (moto's backends are process-wide, and so is it)."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Over HTTP, next to moto's own /moto-api/ endpoints


def clock_endpoint(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    """moto-api handler for ``/moto-api/ddb-assets/clock``.

    ``GET``: the clock's :meth:`WorldClock.state`. ``POST`` a JSON object, one of
    ``{"advance": seconds}`` (optionally with ``"frozen": bool``), ``{"set": epoch_seconds, "frozen": bool}``
    or ``{"real_time": true}`` (never a step back: see :meth:`WorldClock.real_time`);
    the answer is the new state. A refused move (backwards, malformed) is a 400 with ``{"error": "..."}``.
    """
    json_headers = {"Content-Type": "application/json"}
    if request.method == "GET":
        return 200, json_headers, json.dumps(clock.state())
    if request.method != "POST":
        return 405, json_headers, json.dumps({"error": "use GET to read the clock, POST to move it"})
    try:
        body = json.loads(request.data or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if "advance" in body:
            frozen = body.get("frozen")
            if frozen is not None and not isinstance(frozen, bool):
                raise ValueError(f"frozen must be true, false or absent, not {frozen!r}")
            clock.advance(_number(body["advance"], "advance"), frozen=frozen)
        elif "set" in body:
            clock.set(_number(body["set"], "set"), frozen=bool(body.get("frozen", False)))
        elif body.get("real_time"):
            clock.real_time()
        else:
            raise ValueError('expected {"advance": seconds, "frozen": bool}, {"set": epoch, "frozen": bool} or '
                             '{"real_time": true}')
    except ValueError as exc:
        return 400, json_headers, json.dumps({"error": str(exc)})
    return 200, json_headers, json.dumps(clock.state())


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    return float(value)


class ClockClient:
    """The clock of a local world served elsewhere (``ddb-assets emulator``), over HTTP.

    Same methods and errors as :class:`WorldClock`; ``endpoint`` is the world's
    ``http://host:port`` (what ``AWS_ENDPOINT_URL`` points at).
    """

    def __init__(self, endpoint: str, timeout: float = 10):
        self.url = endpoint.rstrip("/") + CLOCK_PATH
        self.timeout = timeout

    def now(self) -> float:
        return float(self.state()["now"])

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), timezone.utc)

    @property
    def frozen(self) -> bool:
        return bool(self.state()["frozen"])

    def state(self) -> dict[str, Any]:
        response = requests.get(self.url, timeout=self.timeout)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def advance(self, seconds: float, *, frozen: bool | None = None) -> float:
        return self._post({"advance": seconds} if frozen is None else {"advance": seconds, "frozen": frozen})

    def set(self, epoch: float, *, frozen: bool = False) -> float:
        return self._post({"set": epoch, "frozen": frozen})

    def real_time(self) -> float:
        return self._post({"real_time": True})

    def _post(self, body: dict[str, Any]) -> float:
        response = requests.post(self.url, json=body, timeout=self.timeout)
        if response.status_code == 400:
            raise ValueError(response.json().get("error", response.text))
        response.raise_for_status()
        return float(response.json()["now"])
