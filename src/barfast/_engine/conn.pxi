# conn.pxi — client connection state: connect, write, read, reconnect.
# Never: (fill in) 
# Invariants: (fill in)
