"""Coalesced changelog writes: due after a delay, once per key, oldest first."""

from __future__ import annotations

from streams.coalesce import DueWrites


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_keys_become_due_after_the_delay_in_first_change_order():
    clock = FakeClock()
    due = DueWrites(5.0, clock)
    due.mark("a")
    clock.now = 1.0
    due.mark("b")
    due.mark("a")  # a second change keeps a's place
    clock.now = 5.5
    assert list(due.take_due()) == ["a"]
    clock.now = 6.0
    assert list(due.take_due()) == ["b"]
    assert len(due) == 0


def test_nothing_is_due_early_and_take_all_empties():
    clock = FakeClock()
    due = DueWrites(5.0, clock)
    due.mark("a")
    due.mark("b")
    assert list(due.take_due()) == []
    assert sorted(due.take_all()) == ["a", "b"]
    assert len(due) == 0
