"""The master-data sync's plan (connectors.sources.masterdata.plan): only what changed is
published, what the ERP no longer lists is removed only when this source had published it (files
keep their entries), and a plan removing too much of a kind is refused whole."""

from __future__ import annotations

from connectors.erp.base import MasterData
from connectors.sources.masterdata import SyncReport, plan


def _employees(*codes: str, **extra: str) -> MasterData:
    entries = {f"employee:{c}": {"party": c, "name": f"name {c}", **extra} for c in codes}
    return MasterData(frozenset({"employee"}), entries)


def _published(listed: MasterData, source: str = "tryton") -> dict[str, dict]:
    return {k: dict(v, source=source) for k, v in listed.entries.items()}


def _plan(current: dict, listed: MasterData, share: float = 0.2) -> SyncReport:
    report = SyncReport("s1", "tryton", dry_run=False)
    plan(current, listed, "tryton", share, report)
    return report


def test_only_new_and_changed_entries_are_published() -> None:
    before = _employees(*(f"E{n}" for n in range(10)))
    current = _published(before)
    current["rate:USD:2026-12-01"] = {"rate": "7.1"}  # a kind this sync does not cover
    listed = _employees(*(f"E{n}" for n in range(11)))
    listed.entries["employee:E3"]["name"] = "renamed"
    report = _plan(current, listed)
    assert [(c.op, c.key) for c in report.changes] == [("add", "employee:E10"),
                                                       ("change", "employee:E3")]  # fmt: skip
    assert report.changes[1].after == {"party": "E3", "name": "renamed", "source": "tryton"}
    counts = report.kinds["employee"]
    assert (counts.listed, counts.added, counts.changed, counts.unchanged) == (11, 1, 1, 9)
    assert report.refused == [] and _plan(_published(listed), listed).changes == []


def test_removals_touch_only_what_this_source_published() -> None:
    current = _published(_employees(*(f"E{n}" for n in range(10))))
    current["employee:F1"] = {"party": "F1"}  # loaded from a file
    current["employee:R1"] = {"party": "R1", "source": "rest"}  # another ERP's
    report = _plan(current, _employees(*(f"E{n}" for n in range(1, 10))))
    assert [(c.op, c.key) for c in report.changes] == [("remove", "employee:E0")]
    assert report.kinds["employee"].owned_before == 10 and report.refused == []


def test_a_file_entry_the_erp_lists_becomes_the_erps() -> None:
    report = _plan({"employee:E1": {"party": "E1", "name": "name E1"}}, _employees("E1"))
    after = {"party": "E1", "name": "name E1", "source": "tryton"}
    assert [(c.op, c.key, c.after) for c in report.changes] == [("change", "employee:E1", after)]


def test_an_empty_answer_or_a_mass_removal_is_refused() -> None:
    current = _published(_employees(*(f"E{n}" for n in range(10))))
    empty = _plan(current, MasterData(frozenset({"employee"}), {}))
    assert empty.refused == ["employee: the ERP listed none, which would remove all 10 this "
                             "sync published before"]  # fmt: skip
    three_gone = _plan(current, _employees(*(f"E{n}" for n in range(3, 10))))
    assert three_gone.refused == [
        "employee: 3 of 10 would be removed at once, more than the 20% allowed (2); check the "
        "ERP's answer, or sync with a larger --max-removal-share"]  # fmt: skip
    assert _plan(current, _employees(*(f"E{n}" for n in range(3, 10))), share=0.3).refused == []
    one_of_three = _published(_employees("E1", "E2", "E3"))
    assert _plan(one_of_three, _employees("E1", "E2")).refused == []  # one is always allowed


def test_skipped_entries_are_reported() -> None:
    listed = MasterData(frozenset({"employee"}), {}, ("company.employee,4: no code",))
    report = _plan({}, listed)
    assert report.skipped == ["company.employee,4: no code"] and report.changes == []


def test_a_gateways_list_is_read_page_by_page_in_the_files_columns() -> None:
    import pytest

    from connectors.erp.rest import at_path
    from connectors.erp.rest_masterdata import MasterDataLists, read_master_data

    staff = [{"no": f"E{n}", "person": {"name": f"员工{n}"}} for n in range(5)]
    staff[3]["left"] = "2026-12-31"
    asked: list[dict] = []

    def get(path: str, query: dict) -> dict:
        asked.append(dict(query, path=path))
        return {"data": {"rows": staff[query["offset"] : query["offset"] + query["limit"]]}}

    lists = MasterDataLists.model_validate({"employee": {
        "path": "/hr/staff", "items_field": "data.rows", "page_size": 2,
        "fields": {"employee_id": "no", "party": "no", "name": "person.name",
                   "left_on": "left"}}})  # fmt: skip
    found = read_master_data("gw", lists, get, at_path)
    assert [q["offset"] for q in asked] == [0, 2, 4] and found.problems == ()
    assert found.kinds == frozenset({"employee"})
    left = {"party": "E3", "name": "员工3", "left_on": "2026-12-31", "source_ref": "/hr/staff#E3"}
    assert found.entries["employee:E3"] == left
    staff[1]["no"] = ""
    assert read_master_data("gw", lists, get, at_path).problems == (
        "employee: item 2 of /hr/staff: employee_id and party are required",)  # fmt: skip
    with pytest.raises(ValueError, match="missing \\['party'\\]"):
        MasterDataLists.model_validate(
            {"employee": {"path": "/x", "fields": {"employee_id": "no"}}}
        )
