"""Report renderers, one small module per output: `text` (the terminal summary, wrk's spirit),
`json` (schema barfast.report/1), `html`, `csv` and `hlog` (docs/reports.md).

Rendering is separate from running: every renderer takes the report dict built by
barfast.result.Merger.report() (or read back by `data.load()`) and nothing else.
"""
