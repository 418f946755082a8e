"""Report renderers: `text` (the terminal summary, wrk's spirit) and `json` (schema barfast.report/1).

Rendering is separate from running: every renderer takes the report dict built by
barfast.result.Merger.report() and nothing else.
"""
