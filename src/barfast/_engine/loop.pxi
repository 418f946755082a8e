# loop.pxi — the client event loop (epoll, nogil) and the Engine class.
# Never: (fill in) 
# Invariants: (fill in)
