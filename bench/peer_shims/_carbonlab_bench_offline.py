"""pytest plugin for the bench (``-p _carbonlab_bench_offline``): pytest-codecarbon, offline.

pytest-codecarbon creates one online ``EmissionsTracker``, which geolocates the machine over the
network and probes cloud metadata addresses. The bench never lets it: this swaps in codecarbon's
``OfflineEmissionsTracker`` with a fixed country, the same arguments otherwise. Everything else the
plugin does (a start and a stop around every test, its CSV) is unchanged.
"""

import pytest_codecarbon
from codecarbon import OfflineEmissionsTracker


def _offline_tracker(**kwargs):
    return OfflineEmissionsTracker(country_iso_code="FRA", **kwargs)


pytest_codecarbon.EmissionsTracker = _offline_tracker
