"""The thresholds as a JUnit XML report (`--junit FILE`): one testsuite, one testcase per threshold,
a <failure> for each that failed. The shape is the Apache Ant JUnit schema that CI systems read
(tests/data/JUnit.xsd; tests/test_thresholds.py validates against it)."""

from __future__ import annotations

import socket
import time
from typing import Any
from xml.etree import ElementTree as ET

from barfast.status import UsageError


def render(report: dict[str, Any]) -> bytes:
    rows = report.get("thresholds") or []
    failed = [r for r in rows if not r["passed"]]
    duration = float(report.get("duration_s") or 0.0)
    suite = ET.Element(
        "testsuite",
        {
            "name": "barfast.thresholds",
            # the schema's timestamp has no timezone: UTC, said so in docs/thresholds.md
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
            "hostname": socket.gethostname() or "localhost",
            "tests": str(len(rows)),
            "failures": str(len(failed)),
            "errors": "0",
            "skipped": "0",
            "time": f"{duration:.6f}",
        },
    )
    props = ET.SubElement(suite, "properties")
    cfg = report.get("config", {})
    for name, value in (
        ("url", cfg.get("url")),
        ("workers", cfg.get("workers")),
        ("open_loop", cfg.get("open_loop")),
        *sorted((f"tag.{k}", v) for k, v in (cfg.get("tags") or {}).items()),
    ):
        if value is not None:
            ET.SubElement(props, "property", {"name": str(name), "value": str(value)})
    for r in rows:
        case = ET.SubElement(
            suite,
            "testcase",
            {"name": r["threshold"], "classname": "barfast.thresholds", "time": f"{duration:.6f}"},
        )
        if not r["passed"]:
            msg = f"{r['metric']} = {r['measured_text']}, not {r['op']} {r['limit']:g}{r['unit']}"
            ab = r.get("aborted")
            if ab:
                msg += (
                    f"; {ab['measured_text']} over the {ab['window_s']:g}s before {ab['at_s']:g}s "
                    "stopped the run"
                )
            fail = ET.SubElement(case, "failure", {"message": msg, "type": "threshold"})
            fail.text = msg
    ET.SubElement(suite, "system-out").text = ""
    ET.SubElement(suite, "system-err").text = ""
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True) + b"\n"


def write(report: dict[str, Any], path: str) -> None:
    """Write the JUnit XML to `path`; an unwritable path is a one-line UsageError."""
    try:
        with open(path, "wb") as f:
            f.write(render(report))
    except OSError as exc:
        raise UsageError(f"cannot write JUnit report to {path!r}: {exc.strerror}") from None


__all__ = ["render", "write"]
