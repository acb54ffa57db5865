"""ERP writers by name, each with its own typed settings section.

Adding an ERP means writing a writer (:class:`connectors.erp.base.ErpWriter`) and its settings
class (a pydantic ``BaseSettings`` with its own ``ERPBRIDGE_<NAME>_*`` prefix), then registering
both here; ``erpbridge sink <name>`` runs it, in its own consumer group
(``<prefix>-sink-<name>``, see :meth:`erpbridge.config.Settings.sink_group`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic_settings import BaseSettings

from connectors.erp.base import ErpWriter
from connectors.erp.kingdee import KingdeeSettings, KingdeeWriter
from connectors.erp.rest import RestErpSettings, RestErpWriter
from connectors.erp.tryton import TrytonSettings, TrytonWriter
from connectors.erp.yonyou import YonyouSettings, YonyouWriter
from erpbridge.archive import Archive


@dataclass(frozen=True)
class WriterKind:
    name: str
    summary: str  # one line, for ``erpbridge sink --help``
    settings: type[BaseSettings]  # read from the environment, checked at start-up
    build: Callable[[Any, Archive | None], ErpWriter]  # (settings, archive of originals)


WRITERS: dict[str, WriterKind] = {}


def register(kind: WriterKind) -> None:
    if kind.name in WRITERS:
        raise ValueError(f"an ERP writer named {kind.name!r} is registered already")
    WRITERS[kind.name] = kind


def build_writer(name: str, config: BaseSettings | None = None,
                 archive: Archive | None = None) -> ErpWriter:  # fmt: skip
    """The writer registered as ``name``, configured by ``config`` (default: its environment);
    ``archive``: where it reads the originals it attaches to bookings."""
    try:
        kind = WRITERS[name]
    except KeyError:
        raise ValueError(f"no ERP writer named {name!r} (known: {', '.join(WRITERS)})") from None
    return kind.build(config if config is not None else kind.settings(), archive)


register(WriterKind("tryton", "Book postings as posted supplier invoices in Tryton (JSON-RPC).",
                    TrytonSettings, TrytonWriter.from_settings))  # fmt: skip
register(WriterKind("rest", "Book postings through a REST ERP gateway (Kingdee, Yonyou, SAP...).",
                    RestErpSettings, lambda config, archive: RestErpWriter(config)))  # fmt: skip
register(WriterKind("kingdee", "Book postings as Kingdee 云星空 vouchers (GL_VOUCHER, WebAPI).",
                    KingdeeSettings, lambda config, archive: KingdeeWriter(config)))  # fmt: skip
register(WriterKind("yonyou", "Book postings as Yonyou U8 vouchers (OpenAPI voucher_ex/add).",
                    YonyouSettings, lambda config, archive: YonyouWriter(config)))  # fmt: skip
