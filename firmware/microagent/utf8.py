# Strict UTF-8 (RFC 3629 s4, Unicode 15 Table 3-7) checked by hand:
# MicroPython's decoder accepts overlong forms, surrogates (U+D800..DFFF)
# and code points above U+10FFFF that CPython's refuses, so the device
# and the host tools would read the same bytes differently without it.


def bad(buf, s, e):
    """Offset of the first byte of buf[s:e] that does not start a
    well-formed UTF-8 sequence, or -1 when all of it is well-formed.

    buf: bytes, bytearray or memoryview; s, e: offsets. Refused: stray
    continuation bytes, C0/C1 (overlong 2-byte forms), E0 80..9F and
    F0 80..8F (overlong 3- and 4-byte forms), ED A0..BF (surrogates),
    F4 90.. and F5..FF (above U+10FFFF), and truncated sequences. The
    offset is where CPython's codec reports the error (its `start`).
    Allocates at most the slice buf[s:e] (a view for a memoryview).
    """
    if e <= s or max(buf[s:e]) < 0x80:  # ASCII: max() loops in C
        return -1
    i = s
    while i < e:
        c = buf[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif 0xE0 <= c <= 0xEF:
            n = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            n = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return i
        if i + 1 >= e or not lo <= buf[i + 1] <= hi:
            return i
        for j in range(i + 2, i + n + 1):
            if j >= e or not 0x80 <= buf[j] <= 0xBF:
                return i
        i += n + 1
    return -1


def decode(buf, s, e, what):
    """buf[s:e] as str after bad() found it well-formed. `what` names the
    field in the error. Raises ValueError ("<what> is not valid UTF-8 at
    offset N") otherwise; the message never quotes the bytes."""
    i = bad(buf, s, e)
    if i >= 0:
        raise ValueError("%s is not valid UTF-8 at offset %d" % (what, i))
    return str(bytes(buf[s:e]), "utf-8")
