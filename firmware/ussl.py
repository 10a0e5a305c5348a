# ussl for MicroPython >= 1.23, which dropped the module: libraries written
# before (PyPI's umqtt.simple 1.3.4 does `import ussl` and calls
# ussl.wrap_socket(sock, **ssl_params)) run unchanged on top of `tls`.
import tls

CERT_NONE = tls.CERT_NONE
CERT_OPTIONAL = tls.CERT_OPTIONAL
CERT_REQUIRED = tls.CERT_REQUIRED


def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE,
                cadata=None, server_hostname=None, do_handshake=True, context=None):
    """The pre-1.23 ussl.wrap_socket() on tls.SSLContext.

    key, cert: the client's private key and certificate as DER bytes (the
    unix build's mbedTLS refuses PEM); cadata: DER of the CA to verify the
    peer with; cert_reqs: CERT_NONE (the old default), CERT_OPTIONAL or
    CERT_REQUIRED; server_hostname: name checked against the peer's
    certificate and sent as SNI. context: an SSLContext made by the caller
    (the newer umqtt.simple's `ssl=SSLContext`), used as is instead of the
    other settings. Returns the TLS stream. Raises OSError or ValueError
    (handshake or certificate failure), as tls does.
    """
    if context is None:
        context = tls.SSLContext(tls.PROTOCOL_TLS_SERVER if server_side else tls.PROTOCOL_TLS_CLIENT)
        if key is not None or cert is not None:
            context.load_cert_chain(cert, key)
        if cadata is not None:
            context.load_verify_locations(cadata)
        context.verify_mode = cert_reqs
    return context.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=do_handshake,
                               server_hostname=server_hostname)
