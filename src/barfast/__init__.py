"""barfast: an HTTP load engine with a native core that measures truthfully.

`barfast.Scenario`, `barfast.Request` and `barfast.Check` build a scenario in Python (a .py file
passed to `barfast run` defines `scenario = barfast.Scenario(...)`), `barfast.feeders` gives
them request data; docs/scenarios.md.
"""

from typing import Any

from barfast.scenario.model import Check, Request, Scenario

__version__ = "0.1.0"

__all__ = ["Check", "Request", "Scenario", "__version__", "feeders"]


def __getattr__(name: str) -> Any:
    # `barfast.feeders` on first use: `import barfast` stays cheap for the CLI
    if name == "feeders":
        import barfast.feeders

        return barfast.feeders
    raise AttributeError(f"module 'barfast' has no attribute {name!r}")
