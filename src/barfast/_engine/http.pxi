# http.pxi — the incremental HTTP/1.1 response parser (RFC 9112 framing).
# Never: (fill in) 
# Invariants: (fill in)
