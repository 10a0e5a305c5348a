# Throwaway private keys for the tests that feed keys where certificates
# are expected (never used for anything else), and the layouts the review
# fed them in. Portable: imported by test_pem.py and test_certcheck.py.


from mphelp import fixture, read_fixture as _read


ED25519 = (b"-----BEGIN PRIVATE KEY-----\n"
           b"MC4CAQAwBQYDK2VwBCIEID5vbbnk9wkxmHjk8dYo1hEIXYt599h2NPq7sxDjUg/M\n"
           b"-----END PRIVATE KEY-----\n")
EC = (b"-----BEGIN EC PRIVATE KEY-----\n"
      b"MHcCAQEEIO8u2FB/Al5/KcO1NYI6bWWlDxZ69xqy6EriMrxspTiEoAoGCCqGSM49\n"
      b"AwEHoUQDQgAE22iupjcaCqPxA/p8AEfnw+GvMrkznjXpb/mNcIKjwmoaS2ocqVjE\n"
      b"6s2QS3YOHlARHofNRcstztEe3WLN4SHL8g==\n"
      b"-----END EC PRIVATE KEY-----\n")
ENCRYPTED = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
             b"MIGjMF8GCSqGSIb3DQEFDTBSMDEGCSqGSIb3DQEFDDAkBBBQNnPvWKF+oYi/Ec3y\n"
             b"N7uuAgIIADAMBggqhkiG9w0CCQUAMB0GCWCGSAFlAwQBKgQQpnD+MvPWOKER3omA\n"
             b"UyGAJQRANBoV+b11gd1JxO+aF0ABF10Ve8wv5C4NhBizxDj99wsI/PBglmUa5kN3\n"
             b"mRUzr7AtGas2sbJtWsttuq4Sb5LBgg==\n"
             b"-----END ENCRYPTED PRIVATE KEY-----\n")

KEYS = (ED25519, EC, ENCRYPTED)


def body(pem):
    lines = pem.split(b"\n")
    return b"".join(l for l in lines if l and not l.startswith(b"-----"))


def label(pem):
    return pem.split(b"\n")[0][11:-5]


def forms(pem):
    """(name, bytes) of a key in the layouts the review fed in."""
    lab = label(pem)
    b64 = body(pem)
    begin = b"-----BEGIN " + lab + b"-----"
    end = b"-----END " + lab + b"-----"
    return (
        ("multi-line", pem),
        ("one line", begin + b64 + end + b"\n"),
        ("one line, no newline", begin + b64 + end),
        ("CR-only", pem.replace(b"\n", b"\r")),
        ("CRLF", pem.replace(b"\n", b"\r\n")),
        ("no END line", pem.split(end)[0]),
        ("labelled CERTIFICATE", b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(pem.split(b"\n")[1:-2]) + b"\n-----END CERTIFICATE-----\n"),
        ("one line, then a certificate", begin + b64 + end + b"\n" + _read("leaf.pem")),
        ("indented one line", b"   " + begin + b64 + end + b"   \n"),
    )


def leak(pem, text):
    """The first 8-character piece of the key's base64 that `text` holds,
    or None (transient allocations only: a 64 KB heap runs it)."""
    b = body(pem).decode()
    for i in range(len(text) - 7):
        w = text[i:i + 8]
        if w in b:
            return w
    return None
