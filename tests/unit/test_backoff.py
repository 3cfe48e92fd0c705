"""Back-off and say-once, the two rules that keep one failing source on every host of a
cloud from flooding a thousand journals."""

from __future__ import annotations

from guard.backoff import Backoff, Repeats


def test_back_off_doubles_within_jitter_up_to_the_cap_and_starts_over_on_success():
    low, high = Backoff(0.5, 30.0, rng=lambda: 0.0), Backoff(0.5, 30.0, rng=lambda: 0.999999)
    lows = [low.next() for _ in range(10)]
    highs = [high.next() for _ in range(10)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]
    assert all(abs(h - 2 * lo) < 1e-4 for h, lo in zip(highs, lows))
    low.reset()
    assert low.next() == 0.25
    assert Backoff(1.0, 60.0).next() >= 0.5, "never shorter than half the step"


def test_a_repeated_warning_is_said_once_then_with_its_count_when_it_changes_or_every_few_minutes():
    clock = [0.0]
    repeats = Repeats(every=300.0, clock=lambda: clock[0])
    assert repeats.say("libvirt", "refused") == 0
    for _ in range(99):
        clock[0] += 1.0
        assert repeats.say("libvirt", "refused") is None
    assert repeats.say("libvirt", "timed out") == 0, "a new text is said at once"
    clock[0] += 1.0
    assert repeats.say("libvirt", "timed out") is None
    clock[0] += 300.0
    assert repeats.say("libvirt", "timed out") == 1, "said again after a while, with the count"
    assert repeats.say("other", "timed out") == 0, "keys are independent"
    repeats.say("libvirt", "timed out")
    assert repeats.clear("libvirt") == 1 and repeats.say("libvirt", "timed out") == 0
