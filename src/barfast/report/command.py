"""`barfast report RUN.json`: render a saved JSON report again (text, HTML, CSV, interval log),
from the JSON alone, so CI can archive the JSON and render it later."""

from __future__ import annotations

import sys

from barfast.report.data import load
from barfast.report.outputs import Outputs
from barfast.status import ExitCode


def report_command(path: str, outputs: Outputs, *, text: bool, latency: bool = False) -> int:
    """Without any output option the text report is printed."""
    outputs.check()
    rep = load(path)
    if text or not (outputs.html or outputs.hlog or outputs.csv_dir):
        from barfast.report.text import render

        sys.stdout.write(render(rep, latency=latency))
        sys.stdout.flush()
    outputs.write(rep)
    return int(ExitCode.OK)


def compare_command(base: str, new: str, *, fail_on: str | None, json_out: bool) -> int:
    """Print the comparison; exit 4 when a --fail-on limit is crossed by a detected change."""
    from barfast.report import compare

    rules = compare.parse_rules(fail_on)  # bad rules fail before anything is read
    rows = compare.compare(load(base), load(new))
    failed = compare.failures(rows, rules)
    if json_out:
        import json

        sys.stdout.write(json.dumps({"rows": rows, "failed": failed}, indent=2) + "\n")
    else:
        sys.stdout.write(compare.render(rows))
    sys.stdout.flush()
    for line in failed:
        print(f"barfast compare: {line}", file=sys.stderr)
    return int(ExitCode.REGRESSION if failed else ExitCode.OK)
