"""The files a report can be written as besides the JSON (`--html`, `--hlog`, `--csv`): one place
that checks their paths before a run and writes them from the report dict after it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from barfast.status import UsageError


@dataclass(frozen=True)
class Outputs:
    html: str | None = None
    hlog: str | None = None
    csv_dir: str | None = None

    def check(self) -> None:
        """Fail before the run (exit 2) when a path could not be written afterwards."""
        for flag, path in (("--html", self.html), ("--hlog", self.hlog)):
            if path is None:
                continue
            parent = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(path):
                raise UsageError(f"cannot write {flag} {path!r}: it is a directory")
            if not os.path.isdir(parent):
                raise UsageError(f"cannot write {flag} {path!r}: no directory {parent!r}")
        if (
            self.csv_dir is not None
            and os.path.exists(self.csv_dir)
            and not os.path.isdir(self.csv_dir)
        ):
            raise UsageError(f"cannot write --csv {self.csv_dir!r}: it is not a directory")

    def write(self, rep: dict[str, Any]) -> None:
        if self.hlog:
            from barfast.report import hlog

            hlog.write(rep, self.hlog)
        if self.csv_dir:
            from barfast.report import csv

            csv.write(rep, self.csv_dir)
        if self.html:
            from barfast.report import html

            html.write(rep, self.html)
