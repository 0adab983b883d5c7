"""Cross-service money reconciliation: `make reconcile` (operator command) and the ledger's gauge worker."""
