"""A deadline tick reads the open cases it knows and a slice of the rest; until a partition's
cases were read once (and after a rebalance), it knows none. What a tick would read is a round,
handled in slices, each continued by one continuation tick at a time."""

from collections.abc import Iterator

from streams.open_cases import CONTINUATION_LOST_S, OpenCases


def test_open_cases_are_known_per_partition_from_the_first_full_read_on() -> None:
    cases = OpenCases()
    cases.note(0, b"C-1", True)  # before the first tick: its full read will find it
    assert not cases.known(0) and cases.keys(0) == []
    cases.start(0)
    for key, is_open in ((b"C-2", True), (b"C-1", True), (b"C-3", False), (b"C-9", True)):
        cases.note(0, key, is_open)
    cases.note(0, b"C-9", False)  # posted since
    cases.note(1, b"C-4", True)  # another partition, not read yet
    assert cases.keys(0) == [b"C-1", b"C-2"] and cases.is_open(0, b"C-2")
    assert not cases.is_open(0, b"C-9") and not cases.known(1)


def test_the_sweep_goes_on_where_it_stopped_and_a_rebalance_forgets_everything() -> None:
    cases = OpenCases()
    cases.start(2)
    assert cases.sweep_from(2) is None
    cases.swept_to(2, b"C-5000")
    assert cases.sweep_from(2) == b"C-5000"
    cases.note(2, b"C-1", True)
    cases.forget_all()
    assert not cases.known(2) and cases.sweep_from(2) is None and cases.keys(2) == []


def test_a_round_runs_until_it_ends_and_a_continuation_is_sent_once_while_it_is_on_its_way(
) -> None:  # fmt: skip
    cases = OpenCases()
    made: list[int] = []

    def keys() -> Iterator[bytes]:
        made.append(1)
        yield from (b"C-1", b"C-2", b"C-3")

    first = cases.round(4, keys)
    assert next(first.keys) == b"C-1" and cases.running(4) is first
    again = cases.round(4, keys)  # a timer tick while it runs: a slice of the same round
    assert again is first and next(again.keys) == b"C-2" and made == [1] and first.slices == 2
    assert cases.continuation_due(4, now=100.0)
    cases.continuation_sent(4, now=100.0)
    assert not cases.continuation_due(4, now=110.0)  # one is on its way
    assert cases.continuation_due(4, now=100.0 + CONTINUATION_LOST_S + 1)  # lost: send again
    cases.continuation_arrived(4)
    assert cases.continuation_due(4, now=111.0)
    cases.end_round(4)
    assert cases.running(4) is None
    assert next(cases.round(4, keys).keys) == b"C-1" and made == [1, 1]  # a new round
    cases.continuation_sent(4, now=120.0)
    cases.forget_all()  # a rebalance: the round and its continuation are forgotten
    assert cases.running(4) is None and cases.continuation_due(4, now=121.0)


def test_a_write_before_the_first_full_read_is_known_once_the_read_starts() -> None:
    cases = OpenCases()
    cases.note(3, b"C-7", True)  # uncommitted yet: the committed entries the read sees lack it
    cases.start(3)
    assert cases.keys(3) == [b"C-7"]
