"""The books: a record of what was sent to the ERP and what it answered, in an analytic store,
for reconciliation and reports (read from here, not by re-scanning topics)."""
