"""pytest hooks for carbon budgets (being built; see issue 4)."""
