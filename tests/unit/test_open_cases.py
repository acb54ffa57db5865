"""A deadline tick reads the open cases it knows and a slice of the rest; until a partition's
cases were read once (and after a rebalance), it knows none."""

from streams.open_cases import OpenCases


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
