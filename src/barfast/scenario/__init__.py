"""Scenarios: a weighted mix of requests, written in YAML or Python, compiled for the engine.

model.py holds the classes (Scenario, Request, Check); load.py reads .yaml/.yml (checked against
schema.json, errors at FILE:LINE:COL) and .py files; compile.py turns a Scenario and the command
line's load flags into a RunConfig whose endpoints the native engine runs.
"""

from pathlib import Path

from barfast.scenario.model import (
    Capture,
    Check,
    Flow,
    Repeat,
    Request,
    Scenario,
    ScenarioError,
    Think,
)


def load_scenario(path: str | Path) -> Scenario:
    """A .yaml/.yml or .py scenario file -> Scenario (ScenarioError, exit 2, on any fault)."""
    from barfast.scenario.load import load_scenario as load

    return load(path)


__all__ = [
    "Capture",
    "Check",
    "Flow",
    "Repeat",
    "Request",
    "Scenario",
    "ScenarioError",
    "Think",
    "load_scenario",
]
