# pacing.pxi — open-loop schedules: intended send times, stages, poisson arrivals.
# Never: (fill in) 
# Invariants: (fill in)
