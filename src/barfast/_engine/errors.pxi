# errors.pxi — errno -> exception conversion for setup failures.
# Never: (fill in) 
# Invariants: (fill in)
