"""Two ways to find primes: a sieve (fast) and trial division (slow on purpose)."""

from __future__ import annotations


def sieve(n: int) -> list[int]:
    """The primes below ``n``.

    >>> sieve(20)
    [2, 3, 5, 7, 11, 13, 17, 19]
    """
    if n < 3:
        return []
    is_prime = bytearray([1]) * n
    is_prime[0] = is_prime[1] = 0
    for p in range(2, int(n**0.5) + 1):
        if is_prime[p]:
            is_prime[p * p :: p] = bytearray(len(range(p * p, n, p)))
    return [i for i, flag in enumerate(is_prime) if flag]


def trial_division(n: int) -> list[int]:
    """The primes below ``n``, checking every candidate against every smaller prime."""
    primes: list[int] = []
    for candidate in range(2, n):
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
    return primes
