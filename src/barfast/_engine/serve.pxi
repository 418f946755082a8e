# serve.pxi — the built-in HTTP/1.1 target (barfast serve).
# Never: (fill in) 
# Invariants: (fill in)
