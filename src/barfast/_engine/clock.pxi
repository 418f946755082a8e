# clock.pxi — monotonic clock and sleeping with ns resolution.
# Never: (fill in) 
# Invariants: (fill in)
