"""Shared by the fuzz tests (tests/test_fuzz_*.py): hypothesis settings, byte mutations, input counts.

Every parser gets random bytes and damaged copies of a valid file (truncated, bytes overwritten,
a run of bytes spliced in); it must answer with one of the library's errors, never a raw one.
`JAXCNN_FUZZ_SCALE=10 pytest -m slow tests/test_fuzz_*.py` tries ten times as many inputs.
"""

import collections
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("JAXCNN_FUZZ_SCALE", "1"))
TRIED: collections.Counter = collections.Counter()  # parser -> inputs tried in this session


def fuzz_settings(examples: int):
    """Modest example counts, no deadline (a loaded 2-core machine), no example database on disk."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@st.composite
def damaged(draw, valid: bytes):
    """`valid` damaged one way: truncated, some bytes overwritten, bytes inserted, or replaced whole."""
    how = draw(st.sampled_from(["truncate", "overwrite", "insert", "random", "nested"]))
    if how == "random" or not valid:
        return draw(st.binary(max_size=2048))
    if how == "nested":  # deeply nested brackets: what a recursive parser (JSON) chokes on
        return draw(st.sampled_from([b"[", b"{\"a\":"])) * draw(st.integers(100, 100_000))
    if how == "truncate":
        return valid[:draw(st.integers(0, len(valid) - 1))]
    at = draw(st.integers(0, len(valid) - 1))
    patch = draw(st.binary(min_size=1, max_size=16))
    if how == "overwrite":
        return valid[:at] + patch + valid[at + len(patch):]
    return valid[:at] + patch + valid[at:]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 40), 2 ** 40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)


def fuzz_tests(check, fast: int, slow: int):
    """Two tests of the property `check(data)`: `fast` inputs in the fast tier, `slow` in the slow tier."""

    def test_fast(data):
        check(data)

    def test_slow(data):
        check(data)

    fast_test = fuzz_settings(fast)(given(data=st.data())(test_fast))
    slow_test = pytest.mark.slow(fuzz_settings(slow)(given(data=st.data())(test_slow)))
    return fast_test, slow_test


def count(name: str) -> None:
    TRIED[name] += 1


def report(terminal) -> None:
    """One line per parser in the terminal summary: how many inputs were tried."""
    if TRIED and terminal is not None:
        terminal.write_line("fuzz inputs tried: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items())))


def _paths(obj, where=()):
    yield where
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*where, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*where, i))


@st.composite
def mutated_json(draw, valid):
    """`valid` (JSON data) with one value somewhere replaced by a random one, or deleted."""
    import copy

    obj = copy.deepcopy(valid)
    where = draw(st.sampled_from(list(_paths(obj))))
    if not where:
        return draw(json_values)
    parent = obj
    for k in where[:-1]:
        parent = parent[k]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[where[-1]]
    else:
        parent[where[-1]] = draw(json_values)
    return obj


def reporter(request):
    """A module fixture's teardown: print the counts of inputs tried (`-rA` not needed)."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        report(request.config.pluginmanager.get_plugin("terminalreporter"))
    TRIED.clear()
