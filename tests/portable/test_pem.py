# PEM input as the review found it: keys are never quoted, a file and a
# buffer give the same answer and message, allocation follows the base64
# a block holds, and the PEM forms OpenSSL reads unambiguously are read.
# On CPython and on the unix port (64 KB heap).
import binascii
import gc

import keys
from microagent import der, x509
from mphelp import raises, scratch
from mphelp import fixture, read_fixture as _read

LEAF_SHA1 = "F9DC6CC6A6EDBED00B1B551C5CD4864C04F7F7D3"


def _tmp():
    import sys
    return scratch("pem")


def _rm(path):
    import os
    try:
        os.remove(path)
    except OSError:
        pass


def _outcome(fn):
    try:
        return "OK " + ",".join(c.sha1 for c in fn())
    except der.DERError as e:
        return "ERR " + str(e)


def both(data):
    """What iter_certs() reads from `data` and iter_file() from a file of
    the same bytes: asserted equal (answer and message), returned."""
    gc.collect()
    a = _outcome(lambda: list(x509.iter_certs(data)))
    path = _tmp()
    with open(path, "wb") as f:
        f.write(data)
    try:
        b = _outcome(lambda: list(x509.iter_file(path)))
    finally:
        _rm(path)
    assert a == b, (a, b)
    assert a != "ERR "  # never an empty message
    return a


def test_keys_are_never_quoted():
    expect = {
        "multi-line": "ERR neither DER nor a PEM CERTIFICATE block",
        "one line": "ERR PEM line 1: malformed BEGIN line",
        "one line, no newline": "ERR PEM line 1: malformed BEGIN line",
        "CR-only": "ERR PEM line 1: malformed BEGIN line (a CR inside the line: CR-only line ends are not PEM)",
        "CRLF": "ERR neither DER nor a PEM CERTIFICATE block",
        "one line, then a certificate": "ERR PEM line 1: malformed BEGIN line",
        "indented one line": "ERR PEM line 1: malformed BEGIN line",
    }
    for pem in keys.KEYS:
        label = keys.label(pem).decode()
        for name, data in keys.forms(pem):
            got = both(data)
            if name in expect:
                assert got == expect[name], (label, name, got)
            elif name == "no END line":
                assert got == "ERR PEM: no -----END %s----- line" % label, got
            else:  # the key's DER read as a certificate: names a structure, not bytes
                assert got == ("ERR expected INTEGER at offset 5, found tag 0x06" if pem is keys.ENCRYPTED
                               else "ERR expected SEQUENCE at offset 2, found tag 0x02"), got
            assert keys.leak(pem, got) is None, (label, name, got)
    # a key followed by a certificate: the certificate is read, the key skipped
    assert both(keys.ED25519 + _read("leaf.pem")) == "OK " + LEAF_SHA1


def test_a_label_is_quoted_only_when_it_can_be_nothing_else():
    cases = (
        (b"-----BEGIN \xffKEY-----\nAAAA\n-----END \xffKEY-----\n", "ERR PEM line 1: malformed BEGIN line"),
        (b"-----BEGIN private key-----\nAAAA\n", "ERR PEM line 1: malformed BEGIN line"),
        (b"-----BEGIN " + b"A" * 41 + b"-----\nAAAA\n", "ERR PEM line 1: malformed BEGIN line"),
        (b"-----BEGIN " + b"A" * 40 + b"-----\nAAAA\n", "ERR PEM: no -----END " + "A" * 40 + "----- line"),
        (b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n", "ERR PEM: no -----END RSA PRIVATE KEY----- line"),
        (b"-----BEGIN -----\n", "ERR PEM line 1: malformed BEGIN line"),
        (b"-----BEGIN CERTIFICATE-----MIIB\n", "ERR PEM line 1: malformed BEGIN line"),
    )
    for data, want in cases:
        got = both(data)
        assert got == want, (data, got)


def test_pem_forms_openssl_reads():
    pem = _read("leaf.pem")
    b64 = keys.body(pem)
    der_ = binascii.a2b_base64(b64)
    ok = "OK " + LEAF_SHA1
    assert both(b"\xef\xbb\xbf" + pem) == ok                        # a UTF-8 byte order mark
    assert both(b"0 s:CN=dev-01\n" + pem) == ok                    # text starting with '0' (0x30)
    assert both(b"0\x82\x02\x43 looks like DER\n" + pem) == ok
    assert both(pem.replace(b" CERTIFICATE-----", b" X509 CERTIFICATE-----")) == ok
    assert both(pem.replace(b" CERTIFICATE-----", b" TRUSTED CERTIFICATE-----")) == ok
    # OpenSSL's trust settings after the certificate: X509_CERT_AUX with
    # trust = { serverAuth } and an alias
    aux = b"\x30\x14\x30\x0a\x06\x08\x2b\x06\x01\x05\x05\x07\x03\x01\x0c\x06dev-01"

    def trusted(extra):
        b = binascii.b2a_base64(der_ + extra).strip()
        return (b"-----BEGIN TRUSTED CERTIFICATE-----\n" + b"\n".join(b[i:i + 64] for i in range(0, len(b), 64))
                + b"\n-----END TRUSTED CERTIFICATE-----\n")
    assert both(trusted(aux)) == ok
    assert both(trusted(aux + b"\x00")) == "ERR 1 bytes after the trust settings (offset 605)"
    assert both(trusted(b"\x30\x81\x03\x05\x01\x00")) == "ERR non-minimal length at offset 584 (3 needs the short form)"
    assert both(trusted(b"\x02\x01\x00")) == "ERR expected SEQUENCE at offset 583, found tag 0x02"
    assert both(trusted(b"\x30\x03\x01\x01\x01")) == "ERR BOOLEAN at offset 585 is not one octet 00 or FF"
    # a plain CERTIFICATE block must hold the certificate alone
    b = binascii.b2a_base64(der_ + aux).strip()
    assert both(b"-----BEGIN CERTIFICATE-----\n" + b + b"\n-----END CERTIFICATE-----\n") == \
        "ERR 22 bytes after the certificate (offset 583)"


def test_der_only_when_sequences_fill_the_input():
    leaf = _read("leaf.der")
    assert both(leaf) == "OK " + LEAF_SHA1
    assert both(_read("two.der")) == "OK " + LEAF_SHA1 + ",035A99EC3D723B0B19B4C5188F32C84EA89CC2FD"
    # the offset is the input's, from a file as from a buffer
    assert both(leaf + b"\n") == "ERR truncated: no length at offset 584"
    assert both(leaf + b"\r\n") == "ERR length 10 at offset 584 runs past the end (0 bytes left)"
    assert both(leaf + b"\x02\x00") == "ERR expected SEQUENCE at offset 583, found tag 0x02"
    assert both(leaf[:300]) == "ERR length 579 at offset 1 runs past the end (296 bytes left)"
    assert both(leaf + leaf[:10]) == "ERR length 579 at offset 584 runs past the end (6 bytes left)"
    assert both(b"") == "ERR empty input"
    assert both(b"\x30") == "ERR truncated: no length at offset 1"
    assert both(b"\x30\x80\x00\x00") == "ERR indefinite length at offset 1 (not DER)"
    assert both(b"\xef\xbb\xbf") == "ERR neither DER nor a PEM CERTIFICATE block"
    assert both(b"hello\n") == "ERR neither DER nor a PEM CERTIFICATE block"


def _one_line(col, ch=b" "):
    # the leaf's base64 on one line with `ch` inserted before column col+1
    b64 = keys.body(_read("leaf.pem"))
    return b"-----BEGIN CERTIFICATE-----\n" + b64[:col] + ch + b64[col:] + b"\n-----END CERTIFICATE-----\n"


def test_whitespace_inside_a_line_is_refused_at_any_column():
    # the file is read through a 129-byte buffer in pieces of 128: columns
    # at the edges of the pieces included
    for col in (1, 64, 126, 127, 128, 129, 255, 256, 257, 383, 384, 700):
        assert both(_one_line(col)) == "ERR PEM line 2: invalid base64 character ' ' at column %d" % (col + 1), col
        assert both(_one_line(col, b"    ")) == "ERR PEM line 2: invalid base64 character ' ' at column %d" % (col + 1), col
        assert both(_one_line(col, b"\t")) == "ERR PEM line 2: invalid base64 character '\\x09' at column %d" % (col + 1), col
        assert both(_one_line(col, b"\r")) == "ERR PEM line 2: invalid base64 character '\\x0d' at column %d" % (col + 1), col
    ok = "OK " + LEAF_SHA1
    b64 = keys.body(_read("leaf.pem"))
    for width in (64, 76, 127, 128, 129, 256):
        lines = [b64[i:i + width] for i in range(0, len(b64), width)]
        # whitespace at the start and end of a line is allowed, whatever its length
        for pad in (b"", b"  ", b" " * 130):
            text = b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(pad + l + pad + b"\r" for l in lines) + b"\n-----END CERTIFICATE-----\n"
            assert both(text) == ok, (width, len(pad))
    # a marker line must fit in 128 bytes, its whitespace included
    assert both(b"-----BEGIN CERTIFICATE-----" + b" " * 101 + b"\n" + b64 + b"\n-----END CERTIFICATE-----\n") == ok
    assert both(b"-----BEGIN CERTIFICATE-----" + b" " * 102 + b"\n" + b64 + b"\n-----END CERTIFICATE-----\n") == \
        "ERR PEM line 1: malformed BEGIN line"


def test_pem_allocates_only_what_the_block_holds():
    # a block whose DER header claims 20,000 bytes, then 24 KB of text: the
    # DER buffer is sized from the 8 base64 characters, not the claim or
    # the rest of the input
    claim = binascii.b2a_base64(b"\x30\x82\x4e\x20\x02\x01").strip()
    data = bytearray(b"-----BEGIN CERTIFICATE-----\n" + claim + b"\n-----END CERTIFICATE-----\n")
    data.extend(b"x" * 24000)
    want = "ERR length 20000 at offset 1 runs past the end (2 bytes left)"
    both(_read("leaf.pem"))  # pem.py is loaded at the first PEM input: not part of the figure
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    assert _outcome(lambda: list(x509.iter_certs(data))) == want
    if hasattr(gc, "mem_alloc"):  # MicroPython: heap growth in bytes, GC on
        assert gc.mem_alloc() - before < 4096
    path = _tmp() + "-claim"
    with open(path, "wb") as f:
        f.write(data)
    data = None
    try:
        gc.collect()
        before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
        assert _outcome(lambda: list(x509.iter_file(path))) == want
        if hasattr(gc, "mem_alloc"):
            assert gc.mem_alloc() - before < 4096
    finally:
        _rm(path)


def test_odd_inputs_give_one_non_empty_message_from_file_and_buffer():
    pem = _read("leaf.pem")
    cases = (
        (pem.replace(b"\n", b"\r"), "ERR PEM line 1: malformed BEGIN line (a CR inside the line: CR-only line ends are not PEM)"),
        (b"-----BEGIN CERTIFICATE-----\r\n-----END CERTIFICATE-----\r\n", "ERR PEM line 2: empty CERTIFICATE block"),
        (pem.replace(b"-----END CERTIFICATE-----", b"-----END X509 CERTIFICATE-----"), "ERR PEM line 15: expected -----END CERTIFICATE-----"),
        (pem.replace(b" CERTIFICATE-----\n", b" TRUSTED CERTIFICATE-----\n", 1), "ERR PEM line 15: expected -----END TRUSTED CERTIFICATE-----"),
        (pem[:-27], "ERR PEM: no -----END CERTIFICATE----- line"),
        (b"\x00" * 100, "ERR neither DER nor a PEM CERTIFICATE block"),
        (b"\x30\x84\x7f\xff\xff\xff" + b"\x00" * 10, "ERR length 2147483647 at offset 1 runs past the end (10 bytes left)"),
        (b"--\n" * 200 + pem, "OK " + LEAF_SHA1),
    )
    for data, want in cases:
        assert both(data) == want, (data[:40], both(data))
