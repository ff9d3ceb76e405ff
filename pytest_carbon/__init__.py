"""pytest-carbon: per-test energy budgets."""
