"""ERP clients. One module per ERP; errors are classified in :mod:`connectors.erp.errors`."""
