# hist.pxi — recording sample batches into hdrh counts buffers at C speed.
# Never: (fill in) 
# Invariants: (fill in)
