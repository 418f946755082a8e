"""The built-in HTTP/1.1 target: `barfast serve` (server.py, the native Server of the engine) and
the embedded target `barfast run` starts when given no URL (embedded.py)."""
