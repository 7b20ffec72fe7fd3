"""The layout's rules (README, "The house"), read from the source by benchmarks/architecture.py:
no import cycle, no upward import between layers, no module over 350 lines, no function over 60."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "architecture.py"


@pytest.fixture(scope="module")
def architecture():
    spec = importlib.util.spec_from_file_location("architecture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def survey(architecture):
    return architecture.survey()


def test_no_import_cycle(architecture, survey):
    graph = {a: {b for x, b in survey["arrows"] if x == a} for a in survey["sizes"]}
    assert architecture.cycles(graph) == []


def test_no_upward_import(architecture, survey):
    assert architecture.upward(survey["arrows"]) == []


def test_every_module_has_a_layer(architecture, survey):
    assert [m for m in survey["sizes"] if architecture.layer(m) is None] == []


def test_modules_and_functions_stay_small(survey):
    assert {m: n for m, n in survey["sizes"].items() if n > 350} == {}
    assert [(n, f) for n, f in survey["functions"] if n > 60] == []


def test_the_checks_see_a_cycle_and_an_upward_import(architecture):
    """The rules can fail: a made-up cycle and a made-up arrow from data up to commands are found."""
    assert architecture.cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    arrow = ("visionlab.data.datamodule", "visionlab.commands.preflight")
    assert architecture.upward({arrow, ("visionlab.commands.train", "visionlab.data")}) == [arrow]
