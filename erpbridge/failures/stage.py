"""The one list of the stages a record can fail at, for every failure topic and log line."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where in the pipeline a record failed (``__connect.errors.stage``)."""

    SOURCE_WEBHOOK = "source.webhook"  # an inbound request refused
    SOURCE_BATCH_FILE = "source.batch_file"  # a row of an imported file refused
    SOURCE_POLL = "source.poll"  # an item of a polled page refused, or the poll retried
    DECODE = "decode"  # reading a record's bytes (a registry outage is retried)
    VALIDATE = "validate"  # an invoice's tax arithmetic
    NORMALIZE = "normalize"  # a claim's codes, rates and amounts
    CORRELATE = "correlate"  # a claim against its invoices (duplicate, invalid)
    CONVERT = "convert"  # a sink could not decode a record
    PUT = "put"  # an ERP write
    DELIVER = "deliver"  # a feedback POST to the expense platform
    COMMIT = "commit"  # a stream worker's commit (asked again while a coordinator moves)
    RESTORE = "restore"  # a stream worker reading its tables back (waits while brokers are away)
