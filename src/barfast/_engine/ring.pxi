# ring.pxi — the lock-free SPSC mmap sample ring (native publish, Python Ring class).
# Never: (fill in) 
# Invariants: (fill in)
