"""barfast: an HTTP load engine with a native core that measures truthfully.

`barfast.Scenario`, `barfast.Request` and `barfast.Check` build a scenario in Python (a .py file
passed to `barfast run` defines `scenario = barfast.Scenario(...)`); docs/scenarios.md.
"""

from barfast.scenario.model import Check, Request, Scenario

__version__ = "0.1.0"

__all__ = ["Check", "Request", "Scenario", "__version__"]
