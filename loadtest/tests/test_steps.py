"""The sweep's step logic and knee detection on synthetic systems whose answers are known.

The synthetic system is a single queue: at offered rate r against capacity C its p99 is
base / (1 - r/C) (so with base 1 ms and a 10 ms bound the true knee is 0.9 C), at r >= C it
serves C and its latency explodes. A generator costing g us of CPU per request can send at
most 1e6/g req/s. Every expected sequence below is worked out by hand from the policy:
start 100, x2 while within bounds, then geometric bisection to 10 %, a latency-only failure
repeated once."""

from __future__ import annotations

import numpy as np
import pytest

from celsius_loadtest import steps as plan


def queue(capacity: float, base_us: float = 1000.0, generator_us: float | None = None, noisy: tuple = ()):
    spoiled = list(noisy)  # rates whose first step a busy machine spoils (p99 50 ms once)

    def measure(rate: float) -> plan.Step:
        cores = rate * generator_us * 1e-6 if generator_us else 0.05
        sent = min(rate, 1e6 / generator_us) if generator_us else rate
        rho = sent / capacity
        if rate in spoiled:
            spoiled.remove(rate)
            p99 = 50_000.0
        elif rho >= 1 or cores > 1:
            p99 = 1e6
        else:
            p99 = base_us / (1 - rho)
        return plan.Step(rate, requests=int(rate * 4), errors=0, sent_rps=sent, achieved_rps=min(sent, capacity),
                         p99_us=p99, generator_cores=min(cores, 1.0))

    return measure


def run_sweep(measure, policy: plan.Policy = plan.Policy()) -> list[plan.Step]:
    done: list[plan.Step] = []
    while (rate := plan.next_rate(done, policy)) is not None:
        step = measure(rate)
        step.verdict = plan.classify(step, policy)
        done.append(step)
    return done


def sequence(done):
    return [(s.offered_rps, s.verdict) for s in done]


def test_ramp_then_bisect_to_the_knee():
    """C = 1000: within the 10 ms bound up to 900 req/s. 1600 and sqrt(800*1600)=1131 are over
    capacity; 951 has p99 1/(1-0.951) = 20.4 ms (repeated, still over); 872 has 7.8 ms;
    951/872 < 1.1: done. The knee, 872, is within 10 % below the true 900."""
    done = run_sweep(queue(1000))
    assert sequence(done) == [(100, "ok"), (200, "ok"), (400, "ok"), (800, "ok"), (1600, "saturated"),
                              (1131, "saturated"), (951, "latency"), (951, "latency"), (872, "ok")]
    knee = plan.find_knee(done)
    assert (knee.rps, knee.limited_by, knee.lower_bound) == (872, "latency", False)
    assert 900 / 1.1 <= knee.rps <= 900


def test_a_spoiled_step_is_repeated_and_the_sweep_goes_on():
    done = run_sweep(queue(1000, noisy=(400.0,)))
    assert sequence(done)[:5] == [(100, "ok"), (200, "ok"), (400, "latency"), (400, "ok"), (800, "ok")]
    assert plan.find_knee(done).rps == 872  # the same knee as without the spoiled step


def test_the_generator_running_out_makes_the_knee_a_lower_bound():
    """A generator at 40 us per request tops out at 25,000 req/s: 25,600 is beyond it (its CPU
    at 1.0 core), the system (capacity 1e6) never is."""
    done = run_sweep(queue(1e6, generator_us=40))
    assert sequence(done)[-4:] == [(25600, "generator"), (18102, "ok"), (21527, "ok"), (23475, "ok")]
    knee = plan.find_knee(done)
    assert (knee.rps, knee.limited_by, knee.lower_bound) == (23475, "generator", True)


def test_when_the_first_rate_is_already_too_much_the_sweep_goes_down():
    """C = 50: 100 is over capacity, 50 = C has unbounded latency (twice; the synthetic steps
    carry no CPU figures, so the sweep may assume a queue), 25 is fine, then bisection: 35
    (3.3 ms), 42 (6.3 ms), 46 (12.5 ms, twice); 46/42 < 1.1."""
    done = run_sweep(queue(50))
    assert sequence(done) == [(100, "saturated"), (50, "latency"), (50, "latency"), (25, "ok"), (35, "ok"),
                              (42, "ok"), (46, "latency"), (46, "latency")]
    assert plan.find_knee(done).rps == 42


def test_a_latency_floor_above_the_bound_is_not_chased_downwards():
    """p99 20 ms at every rate while the service and model server are nearly idle (0.01 and
    0.02 cores): halving the rate cannot help; the repeat confirms it and the sweep ends."""
    def measure(rate):
        return plan.Step(rate, requests=int(rate * 4), errors=0, sent_rps=rate, achieved_rps=rate, p99_us=20_000.0,
                         wall_s=4.0, cpu_s={"service": 0.04, "model_server": 0.08})

    done = run_sweep(measure)
    assert sequence(done) == [(100, "latency"), (100, "latency")]
    knee = plan.find_knee(done)
    assert (knee.rps, knee.limited_by) == (None, "latency")


def test_the_sweep_stops_at_the_rate_cap_and_at_the_step_limit():
    capped = run_sweep(queue(1e9), plan.Policy(max_rps=5000))
    assert [s.offered_rps for s in capped] == [100, 200, 400, 800, 1600, 3200, 5000]
    knee = plan.find_knee(capped)
    assert (knee.rps, knee.limited_by, knee.lower_bound) == (5000, plan.NOT_REACHED, True)
    limited = run_sweep(queue(1e9), plan.Policy(max_steps=5))
    assert [s.offered_rps for s in limited] == [100, 200, 400, 800, 1600]


def test_nothing_within_bounds_means_no_knee():
    done = run_sweep(queue(0.5), plan.Policy(min_rps=10))
    assert all(s.verdict != "ok" for s in done) and done[-1].offered_rps >= 10
    knee = plan.find_knee(done)
    assert knee.rps is None and knee.step is None and knee.limited_by == "saturated"


@pytest.mark.parametrize(("changes", "verdict"), [
    ({}, "ok"),
    ({"errors": 1}, "errors"),
    ({"requests": 0, "errors": 0}, "errors"),
    ({"achieved_rps": 940.0}, "saturated"),
    ({"p99_us": 10_001.0}, "latency"),
    ({"p99_us": None}, "latency"),
    ({"p99_us": 20_000.0, "generator_cores": 0.9}, "generator"),
    ({"achieved_rps": 900.0, "generator_cores": 0.99}, "generator"),
    ({"generator_cores": 1.0}, "ok"),  # a busy generator that kept up is no verdict against the step
])
def test_classify(changes, verdict):
    step = plan.Step(1000.0, requests=4000, errors=0, sent_rps=1000.0, achieved_rps=999.0, p99_us=10_000.0,
                     generator_cores=0.2)
    for key, value in changes.items():
        setattr(step, key, value)
    assert plan.classify(step, plan.Policy()) == verdict


def test_error_ratio_tolerance():
    step = plan.Step(1000.0, requests=1000, errors=1, sent_rps=1000.0, achieved_rps=999.0, p99_us=1.0)
    assert plan.classify(step, plan.Policy(max_error_ratio=0.001)) == "ok"
    assert plan.classify(step, plan.Policy(max_error_ratio=0.0)) == "errors"


def test_nearest_rank_percentiles():
    values = np.arange(1, 1001, dtype=float)
    assert [plan.nearest_rank(values, q) for q in (50, 90, 99, 99.9, 100)] == [500, 900, 990, 999, 1000]
    assert plan.nearest_rank(np.array([7.0]), 99.9) == 7
    assert plan.nearest_rank(np.array([]), 50) is None


MS = 1_000_000  # ns


def test_latency_from_schedule_on_time():
    sent = np.array([0, 1, 2, 3]) * MS
    corrected, lag = plan.latency_from_schedule(sent, np.arange(4), np.full(4, 100_000), 1000.0, workers=4)
    assert list(corrected) == [100_000] * 4 and list(lag) == [0] * 4


def test_a_late_generator_with_free_workers_is_not_the_systems_latency():
    """Request 2 goes out 0.5 ms late while nothing is in flight: the generator was late, the
    system answered in 100 us. Under wrk2's rule (workers None) the lag counts anyway."""
    sent = np.array([0, 1 * MS, 2.5 * MS, 3 * MS])
    latency = np.full(4, 100_000.0)
    corrected, lag = plan.latency_from_schedule(sent, np.arange(4), latency, 1000.0, workers=4)
    assert list(lag) == [0, 0, 0.5 * MS, 0]
    assert list(corrected) == [100_000] * 4
    always, _ = plan.latency_from_schedule(sent, np.arange(4), latency, 1000.0)
    assert list(always) == [100_000, 100_000, 600_000, 100_000]


def test_waiting_for_a_busy_worker_is_the_systems_latency():
    """One worker. Request 0 takes 2.5 ms; request 1 (due at 1 ms) can go only at 2.5 ms and
    takes 0.1 ms: it waited 1.5 ms because the system was slow, 1.6 ms in all. Request 2 (due
    at 2 ms, request 0 still in flight) goes at 2.6 ms: 0.7 ms."""
    sent = np.array([0, 2.5 * MS, 2.6 * MS])
    latency = np.array([2.5 * MS, 0.1 * MS, 0.1 * MS])
    corrected, _ = plan.latency_from_schedule(sent, np.arange(3), latency, 1000.0, workers=1)
    assert corrected == pytest.approx([2.5 * MS, 1.6 * MS, 0.7 * MS])


def test_schedule_start_is_the_earliest_the_sends_imply():
    """The first request went out 0.3 ms late, the others on time: the schedule starts at 0."""
    sent = np.array([0.3 * MS, 1 * MS, 2 * MS])
    _, lag = plan.latency_from_schedule(sent, np.arange(3), np.zeros(3), 1000.0)
    assert lag == pytest.approx([0.3 * MS, 0, 0])


def test_summarize_one_step():
    """1000 req/s for 2 s: 2000 requests due every 1 ms, sent on time; latency 100 us, the last
    1 % (requests 1980..1999) 5 ms and requests 0..9 (warm-up, 0.5 s) 50 ms; 4 answers wrong."""
    n = 2000
    seq = np.arange(n)
    sent = seq * MS
    latency = np.full(n, 100_000.0)
    latency[1980:] = 5 * MS
    latency[:10] = 50 * MS
    good = np.ones(n, bool)
    good[[3, 700, 701, 1500]] = False
    step = plan.summarize(1000.0, sent, seq, latency, good, warmup_s=0.5, workers=256)
    assert (step.requests, step.errors, step.measured) == (2000, 4, 1500)
    assert step.sent_rps == pytest.approx(1999 / 1.999)
    assert step.achieved_rps == pytest.approx(1996 / (1.999 + 0.005))
    # 1500 measured (due from 0.5 s): 1480 at 100 us, 20 at 5 ms; the warm-up's 50 ms left out.
    assert (step.p50_us, step.p90_us, step.p99_us, step.p999_us, step.max_us) == (100, 100, 5000, 5000, 5000)
    assert step.send_lag_p99_us == 0


def test_summarize_no_requests():
    empty = np.array([], dtype=np.int64)
    step = plan.summarize(100.0, empty, empty, empty, np.array([], bool), 0.5)
    assert (step.requests, step.p99_us) == (0, None)
    assert plan.classify(step, plan.Policy()) == "errors"


def test_step_round_trips_through_json_and_gives_cpu_per_request():
    step = plan.Step(500.0, requests=2000, errors=0, sent_rps=500.0, achieved_rps=500.0, wall_s=4.0,
                     cpu_s={"service": 0.1, "model_server": 2.0})
    again = plan.Step.from_dict({**step.to_dict(), "unknown_future_field": 1})
    assert again == step
    assert again.cpu_us_per_request("service") == pytest.approx(50.0)
    assert again.cpu_us_per_request("model_server") == pytest.approx(1000.0)
    assert again.cores("model_server") == pytest.approx(0.5)
    assert again.cpu_us_per_request("generator") is None
