"""The capacity sweep's arithmetic, free of processes so it can be tested on synthetic inputs:
latency from the intended send time, each step's verdict, the next rate to offer, the knee.

A sweep offers one configuration a constant request rate for a few seconds (one *step*),
then a higher one: from `start_rps`, multiplied by `factor` while every step stays within
bounds; after the first step out of bounds it bisects (geometrically) between the highest
rate within bounds and the lowest one out of them until they are within `resolution` of
each other. A step out of bounds on latency alone is repeated once before it counts (a busy
machine can spoil one step); errors, a rate the system did not keep up with, or a busy load
generator count at once. When the first rate is already out of bounds the sweep halves it,
except when only latency is out and no process was busy (at least `busy_cores`): a lower rate
cannot shorten a queue that is not there.

The *knee* is the highest offered rate whose step had p99 <= the bound, no errors, and was
served at (nearly) the offered rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

OK, ERRORS, GENERATOR, SATURATED, LATENCY = "ok", "errors", "generator", "saturated", "latency"
VERDICTS = {
    OK: "within bounds",
    ERRORS: "errors (non-200, transport errors or wrong answers)",
    GENERATOR: "the load generator's CPU was the limit, not the system",
    SATURATED: "served less than the offered rate",
    LATENCY: "p99 above the bound",
}
NOT_REACHED = "not reached"  # the sweep stopped (max rate or steps) before anything was out of bounds


@dataclass(frozen=True)
class Policy:
    start_rps: float = 100.0
    factor: float = 2.0  # ramp: next rate = highest rate within bounds x factor
    resolution: float = 0.10  # stop bisecting when the bracket's high/low <= 1 + resolution
    max_rps: float = 200_000.0
    min_rps: float = 1.0
    max_steps: int = 14
    p99_bound_us: float = 10_000.0
    max_error_ratio: float = 0.0  # errors / requests above this: out of bounds
    min_served_share: float = 0.95  # achieved / offered below this: saturated
    generator_busy_cores: float = 0.85  # generator CPU at or above this (cores) while out of bounds: generator-limited
    busy_cores: float = 0.5  # below the start rate, go down on latency alone only when a process is this busy


@dataclass
class Step:
    """One constant-rate step. Latencies in microseconds, measured from each request's intended
    send time (see `latency_from_schedule`), over the requests after the warm-up window."""

    offered_rps: float
    requests: int  # sent in the whole step
    errors: int  # among them: non-200, transport errors, wrong answers
    sent_rps: float  # requests / (last send - first send)
    achieved_rps: float  # good answers / (last answer - first send)
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    measured: int = 0  # requests behind the percentiles (after the warm-up window)
    send_lag_p99_us: float | None = None  # how late the generator sent, p99
    wall_s: float | None = None  # the step's wall time (the generator's run), seconds
    generator_cores: float | None = None  # generator CPU seconds / step wall time
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process in the step
    errors_by_message: dict[str, int] = field(default_factory=dict)
    verdict: str = ""

    def cpu_us_per_request(self, process: str) -> float | None:
        if process not in self.cpu_s or not self.requests:
            return None
        return self.cpu_s[process] * 1e6 / self.requests

    def cores(self, process: str) -> float | None:
        """CPU seconds / wall seconds of `process` in the step: 1.0 is one CPU kept busy."""
        if process not in self.cpu_s or not self.wall_s:
            return None
        return self.cpu_s[process] / self.wall_s

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def nearest_rank(values: np.ndarray, q: float) -> float | None:
    """The q-th percentile by nearest rank: the value of rank ceil(q/100 * n) in ascending order
    (the smallest value with at least q % of the values at or below it), None for no values.
    (numpy's `inverted_cdf` computes the same rank in floating point and gives p99.9 of 1,000
    values as the 1,000th: 99.9/100 * 1000 = 999.0000000000001.)"""
    n = len(values)
    if n == 0:
        return None
    rank = min(n, max(1, math.ceil(q * n / 100 - 1e-9)))
    return float(np.partition(np.asarray(values), rank - 1)[rank - 1])


def latency_from_schedule(sent_ns: np.ndarray, seq: np.ndarray, latency_ns: np.ndarray, rate: float,
                          workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(latency counted from the intended send time, send lag), both in ns, per request.

    At a constant rate request `seq` is due at t0 + seq / rate, t0 being the earliest start the
    sends imply (so every lag is >= 0). An open-loop generator with `workers` workers sends a
    request late for one of two reasons. All its workers were waiting for answers: the system
    is queueing, and the time the request waited belongs to its latency, or the report would
    hide exactly the queueing it is meant to show (coordinated omission; wrk2 counts latency
    from the intended send time for the same reason). Or the generator itself ran late (its
    CPU, a busy machine): the system never saw the request earlier, so its latency stays as
    measured. The lag is added when, at the moment the request was due, `workers` requests
    were in flight; with `workers` None it is always added (wrk2's rule)."""
    sent = sent_ns.astype(np.float64)
    due = seq.astype(np.float64) * (1e9 / rate)
    t0 = np.min(sent - due)
    due += t0
    lag = sent - due
    if workers is None:
        return latency_ns + lag, lag
    starts = np.sort(sent)
    ends = np.sort(sent + latency_ns)
    in_flight = np.searchsorted(starts, due, side="right") - np.searchsorted(ends, due, side="right")
    return latency_ns + np.where(in_flight >= workers, lag, 0.0), lag


def summarize(offered_rps: float, sent_ns: np.ndarray, seq: np.ndarray, latency_ns: np.ndarray, good: np.ndarray,
              warmup_s: float, workers: int | None = None) -> Step:
    """Figures of one step from per-request arrays (send time ns, sequence number, latency ns,
    whether the answer was good); latencies as `latency_from_schedule` counts them, percentiles
    over the requests due after `warmup_s` (never more than the first half of the step)."""
    n = len(sent_ns)
    if n == 0:
        return Step(offered_rps, 0, 0, 0.0, 0.0)
    corrected, lag = latency_from_schedule(sent_ns, seq, latency_ns, offered_rps, workers)
    due_s = seq / offered_rps
    keep = due_s >= min(warmup_s, float(due_s.max()) / 2)  # never drop more than half the step
    send_span = (sent_ns.max() - sent_ns.min()) / 1e9
    answer_span = ((sent_ns + latency_ns).max() - sent_ns.min()) / 1e9
    kept = corrected[keep] / 1e3
    return Step(
        offered_rps=offered_rps,
        requests=n,
        errors=int(n - good.sum()),
        sent_rps=(n - 1) / send_span if send_span > 0 else float(n),
        achieved_rps=float(good.sum()) / answer_span if answer_span > 0 else float(good.sum()),
        p50_us=nearest_rank(kept, 50), p90_us=nearest_rank(kept, 90), p99_us=nearest_rank(kept, 99),
        p999_us=nearest_rank(kept, 99.9), max_us=float(kept.max()) if len(kept) else None,
        measured=int(keep.sum()),
        send_lag_p99_us=nearest_rank(lag[keep] / 1e3, 99),
    )


def classify(step: Step, policy: Policy) -> str:
    """The step's verdict: ok, errors, generator, saturated or latency (VERDICTS)."""
    if step.requests == 0 or step.errors / step.requests > policy.max_error_ratio:
        return ERRORS
    short = step.achieved_rps < policy.min_served_share * step.offered_rps
    slow = step.p99_us is None or step.p99_us > policy.p99_bound_us
    if (short or slow) and step.generator_cores is not None and step.generator_cores >= policy.generator_busy_cores:
        return GENERATOR
    if short:
        return SATURATED
    if slow:
        return LATENCY
    return OK


def final_steps(steps: list[Step]) -> dict[float, Step]:
    """The last attempt at each offered rate (a repeated step replaces the first), by rate."""
    final: dict[float, Step] = {}
    for s in steps:
        final[s.offered_rps] = s
    return dict(sorted(final.items()))


def next_rate(steps: list[Step], policy: Policy) -> float | None:
    """The rate to offer next, or None when the sweep is done. Steps must carry their verdicts."""
    if len(steps) >= policy.max_steps:
        return None
    if not steps:
        return float(policy.start_rps)
    last = steps[-1]
    if last.verdict == LATENCY and sum(1 for s in steps if s.offered_rps == last.offered_rps) == 1:
        return last.offered_rps  # confirm a latency-only failure once
    final = final_steps(steps)
    ok = [r for r, s in final.items() if s.verdict == OK]
    low = max(ok) if ok else None
    high = min((r for r, s in final.items() if s.verdict != OK and (low is None or r > low)), default=None)
    if high is None:  # ramping up
        if low >= policy.max_rps:
            return None
        return float(min(round(low * policy.factor), policy.max_rps))
    if low is None:  # even the lowest rate tried was out of bounds: go down, if that can help
        if final[high].verdict == LATENCY and not _queueing(final[high], policy):
            return None  # slow while nothing is busy: a latency floor (or a busy machine), not load
        lower = round(high / policy.factor)
        return float(lower) if lower >= policy.min_rps and lower < high else None
    if high / low <= 1 + policy.resolution:
        return None
    middle = float(round(math.sqrt(low * high)))
    return middle if low < middle < high else None


def _queueing(step: Step, policy: Policy) -> bool:
    """Whether a process of the system was busy enough (`policy.busy_cores`) for a lower rate to
    shorten its queue; True when the step has no CPU figures."""
    cores = [step.cores(p) for p in ("service", "model_server")]
    known = [c for c in cores if c is not None]
    return not known or max(known) >= policy.busy_cores


@dataclass
class Knee:
    rps: float | None  # highest offered rate within bounds; None when no step was
    step: Step | None
    limited_by: str  # verdict of the first rate above the knee, or NOT_REACHED
    lower_bound: bool  # True when the system's own limit was not found (generator, or never out of bounds)


def find_knee(steps: list[Step]) -> Knee:
    final = final_steps(steps)
    ok = [s for s in final.values() if s.verdict == OK]
    if not ok:
        first = next(iter(final.values()), None)
        return Knee(None, None, first.verdict if first else NOT_REACHED, False)
    best = max(ok, key=lambda s: s.offered_rps)
    above = [s for r, s in final.items() if r > best.offered_rps]
    limited_by = above[0].verdict if above else NOT_REACHED
    return Knee(best.offered_rps, best, limited_by, limited_by in (GENERATOR, NOT_REACHED))
