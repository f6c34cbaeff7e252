"""EtaEstimator: synthetic runs (steady, warm-up, pauses, slowdown) and a recorded real run."""

import codecs
import json
from pathlib import Path

import pytest

from gpu_magic.monitoring.eta import EtaEstimator
from gpu_magic.parsers import LogParser, Progress

LOGS = Path(__file__).parent / "fixtures" / "logs"


def run(step_times, total, poll=1.0, stop=None):
    """Observe a run whose step i ends at step_times[i], as a poller every ``poll`` s sees it.
    Returns the estimator after the last poll before ``stop`` (seconds)."""
    eta = EtaEstimator()
    stop = step_times[-1] + poll if stop is None else stop
    done, tick = 0, 0.0
    while tick <= stop:
        while done < len(step_times) and step_times[done] <= tick:
            done += 1
        eta.update(tick, done, total)
        tick += poll
    return eta


def cumulative(durations, start=0.0):
    out, t = [], start
    for d in durations:
        t += d
        out.append(t)
    return out


def remaining_error(eta, now, true_end):
    est = eta.estimate(now)
    return (est.finish_at - true_end) / (true_end - now)


def test_unknown_without_a_total():
    eta = EtaEstimator()
    for t in range(10):
        eta.update(float(t), t * 5)
    est = eta.estimate()
    assert not est.known and est.remaining_s is None and est.fraction is None
    assert est.rate == pytest.approx(5.0)


def test_nothing_observed_yet():
    est = EtaEstimator().estimate(3.0)
    assert (est.fraction, est.rate, est.remaining_s, est.finish_at) == (None, None, None, None)


def test_steady_run():
    times = cumulative([0.1] * 1000)
    eta = run(times, 1000, stop=25.0)
    est = eta.estimate(25.0)
    assert est.fraction == pytest.approx(0.25, abs=0.01)
    assert est.rate == pytest.approx(10.0, rel=0.01)
    assert est.finish_at == pytest.approx(100.0, rel=0.01)


def test_warm_up_does_not_dominate():
    times = cumulative([2.0] * 5 + [0.1] * 995)  # 10 s of slow first steps
    true_end = times[-1]
    eta = run(times, 1000, stop=20.0)  # 10% done
    assert abs(remaining_error(eta, 20.0, true_end)) < 0.05


def test_one_evaluation_pause_does_not_send_the_eta_to_hours():
    times = cumulative([0.1] * 500) + cumulative([0.1] * 500, start=50.0 + 120.0)  # 120 s pause
    naive_rate = 1 / 121  # what "last interval" rates would say after the pause: hours left
    eta = run(times, 1000, stop=172.0)
    est = eta.estimate(172.0)
    assert est.remaining_s < 200  # true: 48 s, or 168 s if the pause recurs; naive: 500/naive_rate
    assert est.remaining_s < 0.05 * (490 / naive_rate)
    assert est.rate == pytest.approx(10.0, rel=0.05)


def test_during_a_pause_the_finish_moves_with_the_clock():
    times = cumulative([0.1] * 500) + cumulative([0.1] * 500, start=50.0 + 120.0)
    eta = run(times, 1000, stop=110.0)  # 60 s into the pause
    est = eta.estimate(110.0)
    assert est.finish_at >= 110.0 + 500 * 0.1 * 0.95


def test_periodic_evaluations_are_spread_over_the_remaining_steps():
    durations = []
    for _ in range(5):  # 5 x (200 steps of 0.1 s + 8 s evaluation)
        durations += [0.1] * 199 + [8.1]
    times = cumulative(durations)
    true_end = times[-1]
    now = times[599] + 0.5  # 60% done, three evaluations seen
    eta = run(times, 1000, stop=now)
    assert abs(remaining_error(eta, now, true_end)) < 0.10


def test_a_lasting_slowdown_becomes_the_rate():
    times = cumulative([0.1] * 500 + [0.5] * 500)
    eta = run(times, 1000, stop=times[600])
    assert eta.estimate().rate == pytest.approx(2.0, rel=0.1)
    assert abs(remaining_error(eta, times[600], times[-1])) < 0.10


def test_per_epoch_totals_make_the_run_total():
    eta = EtaEstimator()
    for t in range(1, 26):  # 4 epochs of 100 steps, 10 steps/s
        done = t * 10
        eta.update(
            float(t), step=(done - 1) % 100 + 1, total=100, epoch=(done - 1) // 100 + 1, epochs=4
        )
    est = eta.estimate(25.0)  # epoch 3, step 50
    assert eta.total == 400
    assert est.fraction == pytest.approx(250 / 400)
    assert est.remaining_s == pytest.approx(15.0, rel=0.05)


def test_epoch_lines_alone_give_a_coarse_estimate():
    eta = EtaEstimator()
    for epoch in range(1, 5):
        eta.update(60.0 * (epoch - 1), epoch=epoch, epochs=10)  # "epoch i/10" every minute
    est = eta.estimate(180.0)
    assert est.fraction == pytest.approx(0.3)
    assert est.remaining_s == pytest.approx(420.0, rel=0.05)


def test_a_counter_going_back_starts_over():
    eta = EtaEstimator()
    for t in range(10):
        eta.update(float(t), t * 10, 100)
    eta.update(10.0, 0, 20)
    eta.update(20.0, 10, 20)
    assert eta.total == 20 and eta.estimate(20.0).fraction == 0.5


def test_observe_follows_the_main_bar():
    eta = EtaEstimator()
    p = lambda at, step, **kw: Progress(step=step, total=100, at=at, source="tqdm", **kw)  # noqa: E731
    assert not eta.observe(p(1.0, 5, inner=True))  # a nested evaluation bar
    assert not eta.observe(Progress(step=5, total=100))  # no time
    assert eta.observe(p(1.0, 10, label="download", unit="B"))
    assert eta.observe(p(2.0, 10))  # another bar: a new phase
    assert eta.observe(p(3.0, 20)) and eta.estimate().fraction == 0.2
    assert not eta.observe(Progress(epoch=1, epochs=3, at=4.0))  # epoch lines do not displace steps
    assert eta.observe(Progress(step=1, total=10, at=5.0, source="report"))  # report() wins
    assert not eta.observe(p(6.0, 30))
    assert eta.estimate().fraction == 0.1


def test_deterministic():
    times = cumulative([0.1] * 100 + [3.0] + [0.12] * 300)
    a, b = run(times, 401, stop=30.0), run(times, 401, stop=30.0)
    assert a.estimate(30.0) == b.estimate(30.0)


# -- a recorded run ----------------------------------------------------------------------------


def replay(name, poll):
    """Feed the log as a monitor polling every ``poll`` s (0: as the bytes came) would have."""
    data = (LOGS / f"{name}.log").read_bytes()
    marks = json.loads((LOGS / f"{name}.timing.json").read_text())["marks"]
    if poll:
        ticks = {}
        for t, offset in marks:
            ticks[(int(t / poll) + 1) * poll] = offset
        marks = sorted(ticks.items())
    parser, eta, decoder = LogParser(), EtaEstimator(), codecs.getincrementaldecoder("utf-8")()
    seen, start = [], 0
    for t, offset in marks:
        used = [eta.observe(e) for e in parser.feed(decoder.decode(data[start:offset]), at=t)]
        start = offset
        if any(used):
            seen.append((t, eta.estimate(t)))
    return seen


def test_recorded_hf_trainer_run(capsys):
    """600 steps in 3 epochs with an evaluation after each; the log replayed as it arrived and
    as pollers every 1 s and 2 s saw it. Error = (estimated - actual finish) / actual time left."""
    exact = replay("hf_trainer", 0)
    end = next(t for t, est in exact if est.fraction == 1.0)  # the bar reached 600/600
    job_end = json.loads((LOGS / "hf_trainer.timing.json").read_text())["ended_at"]
    report = [f"hf_trainer: bar complete at {end:.2f}s, process ended at {job_end:.2f}s"]
    for poll in (0, 1, 2):
        for q in (0.25, 0.5, 0.75):
            t, est = next((t, est) for t, est in replay("hf_trainer", poll) if est.fraction >= q)
            err = (est.finish_at - end) / (end - t)
            report.append(
                f"poll {poll}s, {q:.0%} (at {t:5.2f}s): "
                f"finish {est.finish_at:5.2f}s vs {end:5.2f}s, "
                f"error {est.finish_at - end:+5.2f}s = {err:+.1%} of the time left"
            )
            assert abs(err) < 0.25, report[-1]
    with capsys.disabled():
        print("\n" + "\n".join(report))
