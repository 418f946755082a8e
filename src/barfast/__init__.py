"""barfast: an HTTP load engine with a native core that measures truthfully.

`barfast.Scenario`, `barfast.Request` and `barfast.Check` build a scenario in Python (a .py file
passed to `barfast run` defines `scenario = barfast.Scenario(...)`), `barfast.Flow`, `Capture`,
`Think` and `Repeat` build virtual users' flows (docs/flows.md), `barfast.feeders` gives them
request data, and `barfast.run(...)` runs one and returns a `barfast.Result`; docs/scenarios.md.
"""

from typing import Any

from barfast.scenario.model import Capture, Check, Flow, Repeat, Request, Scenario, Think

__version__ = "0.1.0"

__all__ = [
    "Capture",
    "Check",
    "Flow",
    "Repeat",
    "Request",
    "Result",
    "Scenario",
    "Think",
    "__version__",
    "feeders",
    "run",
]


def __getattr__(name: str) -> Any:
    # `barfast.feeders` on first use: `import barfast` stays cheap for the CLI
    if name == "feeders":
        import barfast.feeders

        return barfast.feeders
    if name in ("run", "Result"):
        import barfast.api

        return getattr(barfast.api, name)
    raise AttributeError(f"module 'barfast' has no attribute {name!r}")
