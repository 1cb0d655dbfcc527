"""Injected and random faults: which requests they hit, how often, and the answer each gives."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from zoho_emulator.config import EmulatorConfig
from zoho_emulator.errors import minute_limit, retry_after
from zoho_emulator.messages import NO_RESPONSE, Response, html_response, json_response

# Checked before auth: the request never reaches the emulated Zoho.
EARLY_KINDS = ("drop", "slow")
# Checked after auth and rate limits, instead of the work or (AFTER_WORK_KINDS) after it.
LATE_KINDS = (
    "error",
    "html_error",
    "lose_response",
    "rate_limit",
    "error_after_commit",
    "empty_success",
)
# error_after_commit: a JSON 500 after the work; empty_success: a 2xx with code 0 but without
# the resource the work produced.
AFTER_WORK_KINDS = ("lose_response", "error_after_commit", "empty_success")
TOKEN_KINDS = ("token_throttle",)
FAULT_KINDS = EARLY_KINDS + LATE_KINDS + TOKEN_KINDS
DEFAULT_STATUS = {"error": 500, "html_error": 502, "error_after_commit": 500, "empty_success": 201}
# Kinds a random fault may take, in the order a seeded choice draws from. error_after_commit is
# left out so that seeded draws stay what they were.
RANDOM_KINDS = ("error", "html_error", "slow", "drop", "lose_response", "rate_limit")


@dataclass
class Fault:
    """One injected fault; `times` None means it never runs out."""

    kind: str
    times: int | None = 1
    method: str | None = None
    path: str | None = None
    email: str | None = None
    status: int | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}.")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be None (forever) or at least 1.")
        if self.delay < 0:
            raise ValueError("delay must be 0 or more.")

    def matches(self, method: str, path: str, email: str | None) -> bool:
        """True if this fault applies to the request (token faults apply to every token request)."""
        if self.kind in TOKEN_KINDS:
            return True
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None and not path.startswith(self.path):
            return False
        return self.email is None or (
            email is not None and self.email.casefold() == email.strip().casefold()
        )


class FaultBook:
    """Faults in injection order; the first match of the asked kinds is used up by one request."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Arm a fault."""
        self._faults.append(fault)

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def take(
        self, kinds: tuple[str, ...], method: str, path: str, email: str | None
    ) -> Fault | None:
        """Consume and return the first armed fault of `kinds` matching the request, if any."""
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(method, path, email):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None


class RandomFaults:
    """Off until armed; then each API request independently draws one fault with probability
    `rate`, its kind chosen uniformly from `kinds`. Not thread-safe: call under the emulator lock.
    """

    def __init__(self) -> None:
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ()
        self.delay = 0.0
        self._rng = random.Random()  # noqa: S311 - test traffic, not cryptography

    @property
    def armed(self) -> bool:
        return self.rate > 0 and bool(self.kinds)

    def arm(
        self, rate: float, kinds: Iterable[str], *, seed: int | None = None, delay: float = 1.0
    ) -> None:
        """Start drawing faults; a `seed` makes the sequence of draws repeatable."""
        kinds = tuple(kinds)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("rate must be a number from 0 to 1.")
        unknown = [kind for kind in kinds if kind not in RANDOM_KINDS]
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty selection of {RANDOM_KINDS}.")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError("delay must be 0 or more.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be a whole number or None.")
        self.rate, self.kinds, self.delay = float(rate), kinds, float(delay)
        self._rng = random.Random(seed)  # noqa: S311 - test traffic, not cryptography

    def off(self) -> None:
        """Stop drawing faults."""
        self.rate, self.kinds = 0.0, ()

    def draw(self) -> Fault | None:
        """The fault one request gets, if any (it may still not fire, e.g. if auth fails)."""
        if not self.armed or self._rng.random() >= self.rate:
            return None
        return Fault(self._rng.choice(self.kinds), times=None, delay=self.delay)

    def describe(self) -> dict[str, object]:
        """The settings, for the state endpoint."""
        return {"rate": self.rate, "kinds": list(self.kinds), "delay": self.delay}


def fault_response(fault: Fault, config: EmulatorConfig) -> Response:
    """The answer of a late fault: instead of the work, or (AFTER_WORK_KINDS) after it."""
    if fault.kind == "lose_response":
        return NO_RESPONSE
    if fault.kind == "html_error":
        return html_response(fault.status or DEFAULT_STATUS["html_error"])
    if fault.kind == "empty_success":
        status = fault.status or DEFAULT_STATUS["empty_success"]
        return json_response(status, {"code": 0, "message": "success"})
    if fault.kind == "rate_limit":
        # Same body as a breach, but no org block starts, so Retry-After says the truth: 1 s.
        return minute_limit(retry_after(config, 1)).to_response()
    status = fault.status or DEFAULT_STATUS.get(fault.kind, DEFAULT_STATUS["error"])
    return json_response(status, {"code": -1, "message": "Internal error"})
