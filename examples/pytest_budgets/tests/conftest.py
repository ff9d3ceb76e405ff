import pytest
from primes import sieve


@pytest.fixture(scope="session")
def table():
    """An expensive session fixture: measured as the setup of the first test that asks for it,
    never charged to that test's budget."""
    return sieve(2_000_000)
