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
