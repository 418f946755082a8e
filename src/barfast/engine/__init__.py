"""The native engine and what runs beside it in a worker process.

_core.pyx (one Cython extension, assembled from fragments/*.pxi; include/ has the C contract) holds
the nogil epoll HTTP/1.1 client, the sample ring, the built-in server and histogram recording;
runner.py drives one engine for one plan; aggregate.py drains the ring into HdrHistograms;
histoblob.py is their wire format; inprocess.py is a whole run in this process.
"""
