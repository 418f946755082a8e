/* bf_tls.h — TLS for the client loop (OpenSSL >= 1.1.1): one SSL per connection over the loop's own
 * non-blocking socket, driven by the loop's epoll events.
 * Owns: the mapping of OpenSSL's results onto the loop's few outcomes, the client session store
 * (one resumable session per connection slot), the text of a verification or handshake failure.
 * Never: blocks, allocates per request, or leaves an error on OpenSSL's per-thread queue (every
 * failure path drains it, so the next connection's result is its own).
 * Invariants: called only from the loop thread (one SSL is never shared between threads).
 */
#ifndef BF_TLS_H
#define BF_TLS_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

enum {
    BF_TLS_OK = 0,
    BF_TLS_WANT_READ = 1,   /* wait for the socket to be readable, then call again */
    BF_TLS_WANT_WRITE = 2,  /* wait for the socket to be writable, then call again */
    BF_TLS_EOF = 3,         /* the peer closed (close_notify, or a TCP FIN without it) */
    BF_TLS_SYSCALL = 4,     /* a socket error: *sys_errno says which */
    BF_TLS_FAIL = 5         /* a TLS failure (alert, bad record, verification): see bf_tls_reason */
};

/* What one SSL_* call's result means for the loop. An EOF without close_notify is an EOF (the
 * loop's `closed`/`read` kinds judge it, as for plain TCP), not a TLS failure. */
static inline int bf_tls_result(SSL *ssl, int ret, int *sys_errno) {
    unsigned long e;
    int err = SSL_get_error(ssl, ret);
    switch (err) {
    case SSL_ERROR_NONE:
        return BF_TLS_OK;
    case SSL_ERROR_WANT_READ:
        return BF_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return BF_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return BF_TLS_EOF;
    case SSL_ERROR_SYSCALL:
        *sys_errno = errno;
        ERR_clear_error();
        return errno ? BF_TLS_SYSCALL : BF_TLS_EOF;
    default:
        e = ERR_peek_last_error();
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return BF_TLS_EOF;
        }
#endif
        return BF_TLS_FAIL;   /* the queue is drained by bf_tls_reason or bf_tls_clear */
    }
}

static inline void bf_tls_clear(void) { ERR_clear_error(); }

/* One line naming why a handshake or record failed: the certificate verification result when that
 * is what failed (expired, unknown CA, name mismatch...), else OpenSSL's reason. Drains the queue. */
static inline void bf_tls_reason(SSL *ssl, char *out, size_t cap) {
    long v = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    if (cap == 0)
        return;
    if (v != X509_V_OK) {
        snprintf(out, cap, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        snprintf(out, cap, "%s", r != NULL ? r : "TLS error");
    } else {
        snprintf(out, cap, "TLS error");
    }
    ERR_clear_error();
}

/* The verification result of a failed handshake (X509_V_* , 0 when verification was not the cause). */
static inline long bf_tls_verify_code(SSL *ssl) { return SSL_get_verify_result(ssl); }

/* The client session store: OpenSSL hands every new session (TLS 1.3 sends its tickets after the
 * handshake) to this callback; it replaces the slot's previous one. The slot's address is the
 * SSL's app data (bf_tls_new). Returning 1 keeps the reference. */
static int bf_tls_on_session(SSL *ssl, SSL_SESSION *sess) {
    SSL_SESSION **slot = (SSL_SESSION **)SSL_get_app_data(ssl);
    if (slot == NULL)
        return 0;
    if (*slot != NULL)
        SSL_SESSION_free(*slot);
    *slot = sess;
    return 1;
}

static inline void bf_tls_ctx_sessions(SSL_CTX *ctx, int resume) {
    if (resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, bf_tls_on_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
}

/* A client SSL on fd: `ssl` (the slot's previous one, reset by bf_tls_reset: OpenSSL 3's SSL_new
 * costs more than a resumed handshake) or a new one when NULL; SNI (`sni`, NULL for none: an IP
 * literal is not a server name, RFC 6066 §3), the name or address the certificate must match when
 * the context verifies, the slot's session to resume (may be NULL). NULL when OpenSSL fails (the
 * `ssl` given is freed then). */
static inline SSL *bf_tls_new(SSL *ssl, SSL_CTX *ctx, int fd, const char *sni, const char *host,
                              int host_is_ip, SSL_SESSION **slot) {
    if (ssl == NULL) {
        ssl = SSL_new(ctx);
        if (ssl == NULL) {
            ERR_clear_error();
            return NULL;
        }
    }
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!SSL_set_fd(ssl, fd))
        goto fail;
    if (sni != NULL && sni[0] && !SSL_set_tlsext_host_name(ssl, sni))
        goto fail;
    if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
        if (host_is_ip) {
            if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host))
                goto fail;
        } else if (!SSL_set1_host(ssl, host)) {
            goto fail;
        }
    }
    SSL_set_app_data(ssl, slot);
    if (slot != NULL && *slot != NULL)
        SSL_set_session(ssl, *slot);
    SSL_set_connect_state(ssl);
    return ssl;
fail:
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}

/* The server side (barfast serve --tls-cert): an SSL for an accepted socket. NULL: out of memory. */
static inline SSL *bf_tls_accept_new(SSL_CTX *ctx, int fd) {
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

static inline int bf_tls_handshake(SSL *ssl, int *sys_errno) {
    int r = SSL_do_handshake(ssl);
    return r == 1 ? BF_TLS_OK : bf_tls_result(ssl, r, sys_errno);
}

static inline int bf_tls_read(SSL *ssl, void *buf, size_t n, size_t *got, int *sys_errno) {
    int r = SSL_read_ex(ssl, buf, n, got);
    return r == 1 ? BF_TLS_OK : bf_tls_result(ssl, r, sys_errno);
}

static inline int bf_tls_write(SSL *ssl, const void *buf, size_t n, size_t *put, int *sys_errno) {
    int r = SSL_write_ex(ssl, buf, n, put);
    return r == 1 ? BF_TLS_OK : bf_tls_result(ssl, r, sys_errno);
}

/* Make a closed connection's SSL ready for the slot's next one (no close_notify: a load
 * generator's close costs no extra write). 0: it could not be reset and was freed. */
static inline int bf_tls_reset(SSL *ssl) {
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_app_data(ssl, NULL);
    if (SSL_clear(ssl) == 1) {
        ERR_clear_error();
        return 1;
    }
    SSL_free(ssl);
    ERR_clear_error();
    return 0;
}

/* Drop a connection's SSL without a close_notify (a load generator's close: no extra write), marked
 * shut down so OpenSSL keeps its session resumable. */
static inline void bf_tls_free(SSL *ssl) {
    if (ssl == NULL)
        return;
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_app_data(ssl, NULL);
    SSL_free(ssl);
    ERR_clear_error();
}

#endif /* BF_TLS_H */
