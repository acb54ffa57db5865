"""Sources keep each invoice's original document in the archive (:mod:`erpbridge.archive`)
before they publish it, and the Invoice record names it by its SHA-256.

The original is the file the upstream system carried (``original`` of a webhook's invoice:
XML, PDF or OFD), else what was received for that invoice: the ``<EInvoice>`` element of an
XML export, the line of a JSON Lines file, or the webhook's JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.sources.models import InvoiceIn
from erpbridge.archive import Archive


def keep_original(archive: Archive, model: Any, received: bytes, received_type: str,
                  source: str, origin: Mapping[str, str],
                  record: dict[str, Any]) -> None:  # fmt: skip
    """Archive an invoice's original and set the record's ``original_sha256`` (other kinds of
    entity have none: left as they are)."""
    if not isinstance(model, InvoiceIn):
        return
    carried = model.original
    data, media_type = (carried.content(), carried.media_type) if carried else (
        received, received_type)  # fmt: skip
    where = {**origin, **({"file_name": carried.file_name} if carried and carried.file_name
                          else {})}  # fmt: skip
    record["original_sha256"] = archive.put(data, invoice=model.key, source=source, origin=where,
                                            media_type=media_type)  # fmt: skip
