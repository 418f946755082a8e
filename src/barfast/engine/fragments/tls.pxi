# tls.pxi — Cython view of include/bf_tls.h and the client SSL_CTX, built once per engine in
#   Python-facing setup code (never per connection or per request).
# Never: declares what bf_tls.h or OpenSSL do not define; lets an OpenSSL error reach Python as
#   anything but a one-line ValueError from setup.
# Invariant: an engine with a context verifies the peer unless it was built with verify=False.

import os

from libc.errno cimport ENOMEM
from libc.stdio cimport snprintf


cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX:
        pass
    ctypedef struct SSL:
        pass
    ctypedef struct SSL_SESSION:
        pass
    ctypedef struct SSL_METHOD:
        pass
    const SSL_METHOD *TLS_client_method()
    const SSL_METHOD *TLS_server_method()
    SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
    void SSL_CTX_free(SSL_CTX *ctx)
    int SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version)
    int SSL_CTX_set_default_verify_paths(SSL_CTX *ctx)
    int SSL_CTX_load_verify_locations(SSL_CTX *ctx, const char *cafile, const char *capath)
    int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file)
    int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type)
    int SSL_CTX_check_private_key(const SSL_CTX *ctx)
    void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, void *callback)
    int SSL_CTX_set_alpn_protos(SSL_CTX *ctx, const unsigned char *protos, unsigned int len)
    uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t op)
    int SSL_session_reused(const SSL *ssl)
    void SSL_SESSION_free(SSL_SESSION *s)
    void SSL_get0_alpn_selected(const SSL *ssl, const unsigned char **data, unsigned int *len)
    const char *SSL_get_version(const SSL *ssl)
    int SSL_has_pending(const SSL *ssl)
    long SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode)
    void SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes)
    enum:
        TLS1_2_VERSION
        SSL_VERIFY_NONE
        SSL_VERIFY_PEER
        SSL_FILETYPE_PEM
        SSL_OP_NO_TICKET
        SSL_SESS_CACHE_OFF

cdef extern from "openssl/x509.h" nogil:
    const char *X509_get_default_cert_file()

cdef extern from "openssl/err.h" nogil:
    unsigned long ERR_get_error()
    const char *ERR_reason_error_string(unsigned long e)
    void ERR_clear_error()

cdef extern from "bf_tls.h" nogil:
    enum:
        BF_TLS_OK
        BF_TLS_WANT_READ
        BF_TLS_WANT_WRITE
        BF_TLS_EOF
        BF_TLS_SYSCALL
        BF_TLS_FAIL
    void bf_tls_ctx_sessions(SSL_CTX *ctx, int resume)
    SSL *bf_tls_new(SSL *ssl, SSL_CTX *ctx, int fd, const char *sni, const char *host,
                    int host_is_ip, SSL_SESSION **slot)
    int bf_tls_reset(SSL *ssl)
    SSL *bf_tls_accept_new(SSL_CTX *ctx, int fd)
    int bf_tls_handshake(SSL *ssl, int *sys_errno)
    int bf_tls_read(SSL *ssl, void *buf, size_t n, size_t *got, int *sys_errno)
    int bf_tls_write(SSL *ssl, const void *buf, size_t n, size_t *put, int *sys_errno)
    void bf_tls_reason(SSL *ssl, char *out, size_t cap)
    long bf_tls_verify_code(SSL *ssl)
    void bf_tls_free(SSL *ssl)
    void bf_tls_clear()


cdef enum:
    TLS_REASON_MAX = 160     # the first TLS failure's text, kept for the report


cdef str _tls_error(str what):
    """The newest OpenSSL error as one line (and the queue drained)."""
    cdef unsigned long e = ERR_get_error()
    cdef const char *r = ERR_reason_error_string(e) if e else NULL
    ERR_clear_error()
    return f"{what}: {r.decode('utf-8', 'replace') if r != NULL else 'OpenSSL error'}"


cdef SSL_CTX *tls_server_ctx_new(str certfile, str keyfile, bint resume) except NULL:
    """barfast serve's context: TLS >= 1.2, the certificate chain and key, session tickets (on by
    default in OpenSSL) so clients can resume, or (resume False) no tickets and no session cache,
    so every handshake is a full one whatever the client does. ValueError naming the file."""
    cdef SSL_CTX *ctx = SSL_CTX_new(TLS_server_method())
    cdef bytes b
    if ctx == NULL:
        raise ValueError(_tls_error("TLS context"))
    try:
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        b = certfile.encode()
        if SSL_CTX_use_certificate_chain_file(ctx, b) != 1:
            raise ValueError(_tls_error(f"--tls-cert {certfile}"))
        b = (keyfile or certfile).encode()
        if SSL_CTX_use_PrivateKey_file(ctx, b, SSL_FILETYPE_PEM) != 1:
            raise ValueError(_tls_error(f"--tls-key {keyfile or certfile}"))
        if SSL_CTX_check_private_key(ctx) != 1:
            raise ValueError(_tls_error("--tls-key does not match --tls-cert"))
        SSL_CTX_set_read_ahead(ctx, 1)
        if not resume:
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET)
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF)
    except BaseException:
        SSL_CTX_free(ctx)
        raise
    bf_tls_clear()
    return ctx


cdef SSL_CTX *tls_ctx_new(bint verify, str cafile, str certfile, str keyfile, bint resume,
                          bytes alpn) except NULL:
    """The engine's client context: TLS >= 1.2, the system CA store (or only `cafile`, as curl's
    --cacert), a client certificate for mTLS, sessions kept per connection slot for resumption
    (or tickets off), ALPN. ValueError naming the file and OpenSSL's reason on any failure."""
    cdef SSL_CTX *ctx = SSL_CTX_new(TLS_client_method())
    cdef bytes b
    if ctx == NULL:
        raise ValueError(_tls_error("TLS context"))
    try:
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        # OpenSSL checks the chain even with SSL_VERIFY_NONE (the result is then ignored). Against
        # the default paths its issuer lookup reads the whole CA directory on every handshake
        # (OpenSSL 3's by_store lookup: readdir of /etc/ssl/certs per connection, 2-3x the CPU of a
        # full handshake, benchmarks/bench_http.py --tls handshake), so the system store is loaded
        # once, in memory, from its bundle file; and an unverified context loads none at all.
        if cafile:
            b = cafile.encode()
            if SSL_CTX_load_verify_locations(ctx, b, NULL) != 1:
                raise ValueError(_tls_error(f"--cacert {cafile}"))
        elif verify:
            bundle = os.environ.get("SSL_CERT_FILE") or X509_get_default_cert_file().decode()
            if os.path.isfile(bundle):
                b = bundle.encode()
                if SSL_CTX_load_verify_locations(ctx, b, NULL) != 1:
                    raise ValueError(_tls_error(f"the system CA bundle {bundle}"))
            elif SSL_CTX_set_default_verify_paths(ctx) != 1:
                raise ValueError(_tls_error("the system CA store"))
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER if verify else SSL_VERIFY_NONE, NULL)
        if certfile:
            b = certfile.encode()
            if SSL_CTX_use_certificate_chain_file(ctx, b) != 1:
                raise ValueError(_tls_error(f"--cert {certfile}"))
            b = (keyfile or certfile).encode()
            if SSL_CTX_use_PrivateKey_file(ctx, b, SSL_FILETYPE_PEM) != 1:
                raise ValueError(_tls_error(f"--key {keyfile or certfile}"))
            if SSL_CTX_check_private_key(ctx) != 1:
                raise ValueError(_tls_error("--key does not match --cert"))
        elif keyfile:
            raise ValueError("--key needs --cert")
        if alpn and SSL_CTX_set_alpn_protos(ctx, alpn, <unsigned int>len(alpn)) != 0:
            raise ValueError(_tls_error("ALPN"))
        bf_tls_ctx_sessions(ctx, resume)
        # one recv takes all the socket has (else two per record: its header, then the rest)
        SSL_CTX_set_read_ahead(ctx, 1)
    except BaseException:
        SSL_CTX_free(ctx)
        raise
    bf_tls_clear()
    return ctx
