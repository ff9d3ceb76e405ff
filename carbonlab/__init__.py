"""carbonlab: energy and CO2e of every notebook cell and every test, measured while you work."""

from __future__ import annotations

__version__ = "0.1.0"
