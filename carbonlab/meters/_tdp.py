"""The TDP table's lookup (carbonlab.meters.cpu.lookup_tdp), imported only for a CPU model
string that holds a digit: most of the table code and the name normaliser stay out of a process
whose CPU is configured or says no part number ("Intel(R) Xeon(R) Processor", as many VMs do).
Every name here is also carbonlab.meters.cpu's."""

from __future__ import annotations

import csv
import functools
import io
import os

from .._record import record
from .cpu import TDP_TABLE

# normalise_cpu_name was seven regular expressions; it is now string methods that give the same
# result for every string (tests/test_cpu.py keeps the patterns and compares, on every row of the
# table, /proc/cpuinfo spellings and random strings): compiling the two patterns a usual
# "Intel(R) Xeon(R) ..." name needs cost ~1.7 M instructions at every pytest --carbon start. Each
# step below says the pattern it replaces. \w is str.isalnum() or "_", \d str.isdecimal() and \s
# str.isspace(), as in re (the same Unicode tables).
_CORE_WORDS = frozenset(("dual", "triple", "quad", "six", "eight", "ten", "twelve", "sixteen"))


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _drop_trademarks(name: str) -> str:
    r"""``re.sub(r"\((?:r|tm|c)\)|®|™", "", name, flags=re.IGNORECASE)``: no other character
    matches r, t, m or c ignoring case. The matches cannot overlap one another."""
    i = name.find("(")
    if i >= 0:
        out = []
        last = 0
        while i >= 0:
            a = name[i + 1 : i + 2]
            if a in ("r", "R", "c", "C") and name[i + 2 : i + 3] == ")":
                end = i + 3
            elif (
                a in ("t", "T") and name[i + 2 : i + 3] in ("m", "M") and name[i + 3 : i + 4] == ")"
            ):
                end = i + 4
            else:
                i = name.find("(", i + 1)
                continue
            out.append(name[last:i])
            last = end
            i = name.find("(", end)
        if out:
            out.append(name[last:])
            name = "".join(out)
    if "®" in name:
        name = name.replace("®", "")
    if "™" in name:
        name = name.replace("™", "")
    return name


def _drop_gen_prefix(s: str) -> str:
    r"""``re.sub(r"^\d+(?:st|nd|rd|th) gen ", "", s)``."""
    i = 0
    n = len(s)
    while i < n and s[i].isdecimal():
        i += 1
    if i and s[i : i + 2] in ("st", "nd", "rd", "th") and s.startswith(" gen ", i + 2):
        return s[i + 7 :]
    return s


def _drop_parens(s: str) -> str:
    r"""``re.sub(r"\([^)]*\)", " ", s)``: each "(" up to the first ")" after it."""
    out = []
    last = 0
    i = s.find("(")
    while i >= 0:
        j = s.find(")", i + 1)
        if j < 0:
            break  # no ")" after this "(", nor after any later one
        out.append(s[last:i])
        out.append(" ")
        last = j + 1
        i = s.find("(", last)
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def _drop_frequencies(s: str) -> str:
    r"""``re.sub(r"@.*$|\b\d+(?:\.\d+)?\s*[gm]hz\b", " ", s)`` on a string without "\n": a
    frequency is found back from each "hz" (its match is the one that starts leftmost), and
    everything from the first "@" is one match (no frequency contains "@")."""
    at = s.find("@")
    head = s if at < 0 else s[:at]
    if "hz" in head:
        n = len(head)
        out = []
        last = 0
        k = head.find("hz")
        while k >= 0:
            end = k + 2
            # [gm]hz\b: after "hz" the end (or "@", not a word character) or a non-word character
            if k and head[k - 1] in "gm" and (end == n or not _word(head[end])):
                b = k - 1
                while b > last and head[b - 1].isspace():  # \s*
                    b -= 1
                a = b
                while a > last and head[a - 1].isdecimal():  # \d+
                    a -= 1
                start = -1
                if a < b:
                    if a >= 2 and head[a - 1] == "." and head[a - 2].isdecimal():
                        c = a - 1  # \d+\.\d+ from the start of the digits before the "."
                        while c > 0 and head[c - 1].isdecimal():
                            c -= 1
                        if c == 0 or not _word(head[c - 1]):
                            start = c
                    if start < 0 and (a == 0 or not _word(head[a - 1])):
                        start = a
                if start >= last:
                    out.append(head[last:start])
                    out.append(" ")
                    last = end
            k = head.find("hz", end)
        if out:
            out.append(head[last:])
            head = "".join(out)
    return head if at < 0 else head + " "


def _drop_graphics(s: str) -> str:
    r"""``re.sub(r"\s(?:with|w/)\s.*$", "", s)`` on a string whose only whitespace is " "."""
    cut = [i for i in (s.find(" with "), s.find(" w/ ")) if i >= 0]
    return s[: min(cut)] if cut else s


def _drop_core_counts(s: str) -> str:
    r"""``re.sub(r"\b(?:\d+|dual|triple|quad|six|eight|ten|twelve|sixteen)-cores?\b", " ", s)``:
    the word before each "-core" is the whole run of word characters before it (a match starts
    at a word boundary)."""
    n = len(s)
    out = []
    last = 0
    k = s.find("-core")
    while k >= 0:
        end = k + 5
        if s[end : end + 1] == "s":
            end += 1
        if end == n or not _word(s[end]):
            p = k
            while p > last and _word(s[p - 1]):
                p -= 1
            w = s[p:k]
            if w and (p == 0 or not _word(s[p - 1])) and (w.isdecimal() or w in _CORE_WORDS):
                out.append(s[last:p])
                out.append(" ")
                last = end
                k = s.find("-core", end)
                continue
        k = s.find("-core", k + 1)
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def _drop_noise(s: str) -> str:
    r"""``re.sub(r"\b(?:cpu|processor)\b", " ", s)``: the two words where they stand whole (two
    such matches never overlap)."""
    n = len(s)
    spans = []
    for word in ("cpu", "processor"):
        i = s.find(word)
        while i >= 0:
            end = i + len(word)
            if (i == 0 or not _word(s[i - 1])) and (end == n or not _word(s[end])):
                spans.append((i, end))
            i = s.find(word, i + 1)
    if not spans:
        return s
    spans.sort()
    out = []
    last = 0
    for i, end in spans:
        out.append(s[last:i])
        out.append(" ")
        last = end
    out.append(s[last:])
    return "".join(out)


def normalise_cpu_name(name: str) -> str:
    """Reduce a CPU model string to the form both /proc/cpuinfo and the table reduce to.

    The same function is applied to both sides, then looked up exactly (no fuzzy matching: a near miss
    picks the wrong TDP silently; a miss falls back to a stated default, visibly).

    >>> normalise_cpu_name("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz")
    'intel xeon gold 6148'
    >>> normalise_cpu_name("AMD EPYC 7763 64-Core Processor")
    'amd epyc 7763'
    """
    # Each test below is a part every change of its step needs: without it, the step changes nothing.
    if "(" in name or "®" in name or "™" in name:
        name = _drop_trademarks(name)
    s = name.casefold()
    s = " ".join(s.split())  # from here the only whitespace is " " (and there is no "\n")
    if " gen " in s:
        s = _drop_gen_prefix(s)
    if "(" in s:
        s = _drop_parens(s)
    if "@" in s or "hz" in s:
        s = _drop_frequencies(s)
    if " with " in s or " w/ " in s:
        s = _drop_graphics(s)
    if "-core" in s:
        s = _drop_core_counts(s)
    if "cpu" in s or "processor" in s:
        s = _drop_noise(s)
    s = s.replace("core2 ", "core 2 ")  # "Core(TM)2 Duo" in cpuinfo, "Core 2 Duo" in the table
    return " ".join(s.split()).strip(" ,")


@record(frozen=True)
class TdpMatch:
    name: str  # the table's spelling
    tdp_w: float
    rule: str  # "exact", or "without-vendor" (AMD rows such as "A10-7850K" carry no vendor)


@functools.lru_cache(maxsize=1)
def _tdp_lines() -> tuple[list[str], list[str]]:
    """The table's data lines, and the same lines casefolded (for a cheap pre-filter)."""
    # open() beside the package, not importlib.resources: that import (tempfile, shutil, zipfile,
    # ...) was several ms of the first measured region.
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", TDP_TABLE)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()[1:]  # header: Name,TDP
    return lines, [line.casefold() for line in lines]


@functools.lru_cache(maxsize=64)
def _tdp_table(token: str) -> dict[str, tuple[str, float] | None]:
    """Normalised name -> (table name, TDP) for the rows whose name contains ``token``; None where
    rows disagree (ambiguous: never matched).

    Normalising removes text and never adds any, so every token of a normalised name is in the raw
    name: filtering rows by the query's rarest token first keeps the result exact while normalising
    a handful of rows instead of all ~4,900 (which cost ~50 ms at the first window). Rows with an
    unparsable TDP ("27.29.5") are skipped.
    """
    lines, folded = _tdp_lines()
    picked = [line for line, low in zip(lines, folded) if token in low]
    table: dict[str, tuple[str, float] | None] = {}
    for row in csv.DictReader(io.StringIO("\n".join(picked)), fieldnames=["Name", "TDP"]):
        try:
            tdp = float(row["TDP"])
        except (TypeError, ValueError):
            continue
        name = (row["Name"] or "").strip()
        key = normalise_cpu_name(name)
        if not key or tdp <= 0:
            continue
        if key in table:
            prev = table[key]
            if prev is not None and prev[1] != tdp:
                table[key] = None
        else:
            table[key] = (name, tdp)
    return table


def lookup_tdp(model: str) -> TdpMatch | None:
    """The TDP of a CPU model string, or None when the table has no unambiguous row for it.

    >>> lookup_tdp("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz")
    TdpMatch(name='Intel Xeon Gold 6148', tdp_w=150.0, rule='exact')
    """
    key = normalise_cpu_name(model)
    if not key:
        return None
    numbered = [tok for tok in key.split() if any(ch.isdigit() for ch in tok)]
    if not numbered:
        # "Intel Xeon Processor" (as many VMs report) names a family, not a part: no TDP to find.
        return None
    _, folded = _tdp_lines()
    rarest = min(numbered, key=lambda tok: sum(tok in low for low in folded))
    table = _tdp_table(rarest)
    hit = table.get(key)
    if hit is not None:
        return TdpMatch(hit[0], hit[1], "exact")
    # Then the one convention of the table that normalising cannot bridge: some AMD rows carry no
    # vendor ("A10-7850K", "7th Gen A10-9600P APU", "TL-52"). Only AMD: no such row is an Intel part.
    if key.startswith("amd "):
        hit = table.get(key[len("amd ") :])
        if hit is not None:
            return TdpMatch(hit[0], hit[1], "without-vendor")
    return None
