# The agent's certificate checks: the files of config.certificates (at
# start, at each window end, and when a file changes) and the peer
# certificates an application hands over from a TLS handshake.
# Loaded only when there is something to check (Agent.configure()).
import os

from . import config, x509
from .der import DERError

STAT_EVERY_S = 5  # agent seconds between os.stat() looks at the files
# a file is read again at a window end at least this often (agent seconds)
# even when size and mtime look unchanged: an unset RTC stamps every
# file alike, and a renewed certificate often has the same size
REREAD_S = 3600


def _sig(path):
    # what tells a changed file: size and modification time
    st = os.stat(path)
    return (st[6], st[8])


def _summary(certs):
    # (subject, sha1, sha256) of the first certificate, then the one that
    # expires first and the one that becomes valid last: all a verdict
    # needs, so a file with many certificates costs no more RAM than one
    first = None
    exp = None
    nyv = None
    for c in certs:
        if first is None:
            first = (c.label(), c.sha1, c.sha256)
        if exp is None or c.not_after < exp[1]:
            exp = (c.label(), c.not_after)
        if nyv is None or c.not_before > nyv[1]:
            nyv = (c.label(), c.not_before)
    return first + exp + nyv


def _reason(e):
    if isinstance(e, OSError):
        n = e.args[0] if e.args else None
        try:
            import errno
            n = errno.errorcode.get(n, n)
        except ImportError:
            pass
        return "cannot read (%s)" % (n,)
    if isinstance(e, MemoryError):
        return "too large for the heap"
    if isinstance(e, DERError):  # says it all, and never quotes key or certificate bytes
        return str(e)[:120]
    # anything else might quote what it read: its class only
    return "%s (details not shown)" % type(e).__name__


def _times(agent):
    # (now, warn-until) as (Y, M, D, h, m, s) tuples, or None while the
    # device clock is not set (utc_if_set() reports clock_not_set)
    now = agent.utc_if_set()
    if now is None:
        return None
    days = agent.cfg.expiry_days if agent.cfg is not None else 30
    return x509.civil(now), x509.civil(now + days * 86400)


def _verdicts(agent, path, info, expected, times):
    subj, sha1, sha256, esubj, not_after, nsubj, not_before = info
    if expected:
        if len(expected) == 40:
            actual, rule = sha1, "sha1"
        else:
            actual, rule = sha256, "sha256"
        if actual != expected:
            agent.report("cert_thumbprint_mismatch", (
                ("path", path), ("subject", subj), ("expected", expected),
                ("actual", actual), ("rule", rule)))
    if times is None:
        return
    now, warn = times
    if not_after < now:
        agent.report("cert_expired", (("path", path), ("subject", esubj), ("not_after", x509.iso(not_after))))
    elif not_after < warn:
        agent.report("cert_expiring", (("path", path), ("subject", esubj), ("not_after", x509.iso(not_after))))
    if not_before > now:
        agent.report("cert_not_yet_valid", (("path", path), ("subject", nsubj), ("not_before", x509.iso(not_before))))


def _error(agent, path, reason, operation="certificate"):
    agent.report("agent_error", (("operation", operation), ("path", path), ("error", reason)))


class CertCheck:
    """The checks of the configured certificate files (config.md,
    `certificates`): validity against the device clock, and the SHA-1
    (40 hex digits) or SHA-256 (64) thumbprint where expectedThumbprint is
    set. Findings: cert_expired, cert_expiring (within
    certExpiryWarningDays, default 30), cert_not_yet_valid (each for the
    file's certificate that expires first / becomes valid last),
    cert_thumbprint_mismatch (the file's first certificate; details say
    which `rule`, "sha1" or "sha256", was compared), agent_error for a file
    that cannot be read or is not certificates. No expiry verdict while
    the clock is not set.

    CertCheck(agent) registers itself: check() in agent.checks (start,
    window ends, clock set), watch() in agent.watchers (poll(): a file
    whose size or mtime changed is checked again within STAT_EVERY_S). A
    change that leaves both alike is seen at the first window end
    REREAD_S after the last read.
    Memory: a few small tuples per configured file, whatever the files
    hold; a file is read one certificate at a time.
    """

    def __init__(self, agent):
        self._cfg = None
        self._files = []
        self._next = 0
        agent.checks.append(self.check)
        agent.watchers.append(self.watch)

    def _sync(self, cfg):
        if cfg is self._cfg:
            return
        self._cfg = cfg
        # [path, expected, stat signature, summary or error text, agent s of the last read]
        self._files = [[p, tp, None, None, 0] for p, tp in (cfg.certificates if cfg is not None else ())]

    def _look(self, agent, f, times, due=False):
        # read the file again when it changed, was never read, or (due)
        # was last read REREAD_S ago
        path = f[0]
        try:
            sig = _sig(path)
        except Exception as e:
            f[2] = None
            f[3] = _reason(e)
            _error(agent, path, f[3])
            return
        if sig != f[2] or f[3] is None or (due and agent.sec - f[4] >= REREAD_S):
            f[2] = sig
            f[4] = agent.sec
            try:
                f[3] = _summary(x509.iter_file(path))
            except Exception as e:
                f[3] = _reason(e)
        if isinstance(f[3], str):
            _error(agent, path, f[3])
        else:
            _verdicts(agent, path, f[3], f[1], times)

    def check(self, agent):
        """Check every configured file (agent.checks calls this)."""
        self._sync(agent.cfg)
        if not self._files:
            return
        times = _times(agent)
        for f in self._files:
            self._look(agent, f, times, True)

    def watch(self, agent):
        """Check again each file whose size or mtime changed; looks at
        most once every STAT_EVERY_S agent seconds (agent.watchers)."""
        if agent.sec < self._next:
            return
        self._next = agent.sec + STAT_EVERY_S
        self._sync(agent.cfg)
        times = False
        for f in self._files:
            try:
                sig = _sig(f[0])
            except Exception:
                sig = None
            if sig != f[2]:
                if times is False:
                    times = _times(agent)
                self._look(agent, f, times)


def check_peer(agent, der, expected=None, label="tls", depth=0):
    """Check one peer certificate from a TLS handshake.

    der: the certificate's DER (bytes or the memoryview
    tls.SSLContext.verify_callback passes; read at once, not kept);
    expected: thumbprint text (40 or 64 hex digits, colons/spaces/case
    ignored) or None; label: names the peer in findings, whose `path`
    is "tls:" + label (plus "#depth" for a chain certificate above the
    leaf). Reports the same findings as the file checks. Returns the
    x509.Certificate, or None when der is not a certificate (one
    agent_error finding). Raises ValueError (config.ConfigError) for a
    malformed `expected`.
    """
    if expected is not None:
        expected = config.thumbprint_hex(expected, "expected")
    path = "tls:" + label if not depth else "tls:%s#%d" % (label, depth)
    try:
        c = x509.parse(der)
    except ValueError as e:
        _error(agent, path, _reason(e), "check_cert")
        return None
    _verdicts(agent, path, _summary((c,)), expected, _times(agent))
    return c


class PeerWatch:
    """A tls.SSLContext.verify_callback that inventories and pins the
    peer's certificates:

        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED      # or CERT_OPTIONAL
        ctx.verify_callback = PeerWatch(agent, "9F1C...E2", "hub")

    mbedtls calls it once per chain certificate, the top first and the
    server's own (depth 0) last; with CERT_NONE it is not called at all.
    Every certificate is checked for validity (check_peer()); `expected`
    (SHA-1 or SHA-256 thumbprint text) is compared with the depth-0
    certificate only. After a handshake, .chain holds the Certificates
    seen (top first, at most 8) and .peer the server's own; .pinned is
    True/False after a comparison, None before. With enforce=True a
    mismatch (or an unreadable server certificate while a thumbprint is
    expected) makes the callback return -1, so wrap_socket() raises
    OSError and the connection is not made; otherwise the agent only
    reports. The callback never raises into the TLS stack.
    """

    def __init__(self, agent, expected=None, label="tls", enforce=False):
        self.agent = agent
        self.expected = config.thumbprint_hex(expected, "expected") if expected is not None else None
        self.label = label
        self.enforce = enforce
        self.chain = []
        self.peer = None
        self.pinned = None
        self._depth = -1

    def __call__(self, cert, depth):
        try:
            if depth >= self._depth:  # a new handshake starts at the top
                self.chain = []
                self.peer = None
                self.pinned = None
            self._depth = depth
            leaf = depth == 0
            c = check_peer(self.agent, cert, self.expected if leaf else None, self.label, depth)
            if c is not None and len(self.chain) < 8:
                self.chain.append(c)
            if leaf:
                self._depth = -1
                self.peer = c
                if self.expected is not None:
                    self.pinned = c is not None and c.matches(self.expected)[0]
                    if self.enforce and not self.pinned:
                        return -1
        except Exception as e:
            self.agent._fault("verify_callback", e)
        return 0
