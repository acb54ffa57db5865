"""The master data a REST ERP gateway lists, read through the REST writer's session.

Configured, not coded: ``ERPBRIDGE_REST_ERP_MASTERDATA`` is a JSON map of kind (``employee``,
``department``, ``cost_centre``, ``rate``, ``company``, ``category``, ``input_vat``: the reference
file's kinds) to a list endpoint::

    {"employee": {"path": "/employees", "items_field": "items",
                  "fields": {"employee_id": "code", "party": "code", "name": "name",
                             "department": "dept.code", "left_on": "left_on"}}}

Each kind is read whole, page by page (``offset`` and ``limit`` query parameters, ``page_size``
a page; a page shorter than that is the last), and each item becomes a row in the reference
file's columns (``fields``: column -> dotted path in the item), checked by the same rules as a
file (:func:`connectors.sources.reference_file.entry_of`). An item that does not read makes its
kind's answer unusable: it is reported as a problem, and the sync refuses it whole rather than
publish part of a kind (the items it left out would be removed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.erp.base import MasterData
from connectors.erp.errors import PermanentErpError
from connectors.sources.reference_file import COLUMNS, entry_of

MAX_PAGES = 10_000


class MasterDataList(BaseModel):
    """One kind's list endpoint on the gateway."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(pattern=r"^/")
    fields: dict[str, str]  # reference-file column -> dotted path in an item
    items_field: str = ""  # where the page's items are in the answer (empty: the answer itself)
    page_size: int = Field(500, ge=1, le=10_000)

    def check(self, kind: str) -> None:
        required, optional = COLUMNS[kind]
        missing = sorted(set(required) - self.fields.keys())
        unknown = sorted(self.fields.keys() - set(required) - set(optional))
        if missing or unknown:
            raise ValueError(f"masterdata {kind}: fields must map {sorted(required)} (and may "
                             f"map {sorted(optional)}); missing {missing}, unknown "
                             f"{unknown}")  # fmt: skip


class MasterDataLists(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    employee: MasterDataList | None = None
    department: MasterDataList | None = None
    cost_centre: MasterDataList | None = None
    rate: MasterDataList | None = None

    @model_validator(mode="after")
    def _columns(self) -> MasterDataLists:
        for kind, spec in self.kinds().items():
            spec.check(kind)
        return self

    def kinds(self) -> dict[str, MasterDataList]:
        return {kind: spec for kind in COLUMNS
                if (spec := getattr(self, kind, None)) is not None}  # fmt: skip


Page = Callable[[str, Mapping[str, Any]], Any]  # (path, query) -> the decoded answer


def read_master_data(name: str, lists: MasterDataLists, get: Page,
                     at_path: Callable[[Any, str], Any]) -> MasterData:  # fmt: skip
    entries: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for kind, spec in lists.kinds().items():
        for number, item in enumerate(_items(name, spec, get, at_path), 1):
            row = {column: _text(at_path(item, path)) for column, path in spec.fields.items()}
            try:
                key, value = entry_of(kind, row)
            except (ValueError, InvalidOperation, KeyError) as exc:
                problems.append(f"{kind}: item {number} of {spec.path}: {exc}")
                continue
            entries[key] = dict(value, source_ref=f"{spec.path}#{key.partition(':')[2]}")
    return MasterData(frozenset(lists.kinds()), entries, problems=tuple(problems))


def _items(name: str, spec: MasterDataList, get: Page,
           at_path: Callable[[Any, str], Any]) -> list[Any]:  # fmt: skip
    found: list[Any] = []
    for page in range(MAX_PAGES):
        answer = get(spec.path, {"offset": page * spec.page_size, "limit": spec.page_size})
        items = at_path(answer, spec.items_field) if spec.items_field else answer
        if not isinstance(items, list):
            raise PermanentErpError(f"{name}: {spec.path} answered no list at "
                             f"{spec.items_field or 'its top'}: {str(answer)[:200]}")  # fmt: skip
        found.extend(items)
        if len(items) < spec.page_size:
            return found
    raise PermanentErpError(f"{name}: {spec.path} did not end within {MAX_PAGES} pages")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()
