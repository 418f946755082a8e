# contract.pxi — Cython view of include/barfast.h: sample record, error kinds, flags, atomics.
# Never: declares anything that barfast.h does not define (the C header is the source of truth).
# Invariant: sizeof(bf_sample_t) == 64 (checked by a _Static_assert in the header).


cdef extern from "barfast.h" nogil:
    ctypedef struct bf_sample_t:
        uint64_t intended_ns
        uint64_t send_ns
        uint64_t first_byte_ns
        uint64_t done_ns
        uint64_t seq
        uint32_t bytes_rx
        uint32_t bytes_tx
        uint32_t conn_id
        uint16_t endpoint
        uint16_t status
        uint8_t error
        uint8_t flags
        uint16_t sys_errno
        uint32_t connect_us

    enum:
        BARFAST_DEBUG
        BF_ERR_NONE
        BF_ERR_CONNECT
        BF_ERR_TIMEOUT
        BF_ERR_READ
        BF_ERR_WRITE
        BF_ERR_PARSE
        BF_ERR_CLOSED
        BF_ERR_NOT_SENT
        BF_ERR_TLS
        BF_ERR__COUNT
        BF_FLAG_NEW_CONN
        BF_FLAG_CONN_CLOSE
        BF_FLAG_OPEN_LOOP
        BF_FLAG_INTERIM
        BF_FLAG_CHECK_FAIL
        BF_FLAG_ITERATION

    uint64_t bf_load_acquire_u64(const uint64_t *p)
    uint64_t bf_load_relaxed_u64(const uint64_t *p)
    void bf_store_release_u64(uint64_t *p, uint64_t v)
    void bf_store_relaxed_u64(uint64_t *p, uint64_t v)
    uint64_t bf_fetch_add_relaxed_u64(uint64_t *p, uint64_t v)
    int bf_load_acquire_int(const int *p)
    void bf_store_release_int(int *p, int v)
