"""Typed surface of barfast._core (the native extension). Docstrings live here."""

from __future__ import annotations

# --- ring (ring.pxi) ---

# --- hist (hist.pxi) ---

# --- http parser test hooks (http.pxi) ---

# --- engine (loop.pxi, conn.pxi, pacing.pxi) ---

# --- server (serve.pxi) ---
