# Baseline configuration (../shared/spec/config.md): validated as a whole,
# refused as a whole with a message naming the key.
from . import ipaddr
from .duration import parse_duration

# Time-window ruleTypes the device counts, in counter-index order.
WINDOW_RULES = (
    "ActiveConnectionsNotInAllowedRange",
    "MqttC2DMessagesNotInAllowedRange",
    "MqttD2CMessagesNotInAllowedRange",
    "DirectMethodInvokesNotInAllowedRange",
    "MqttC2DRejectedMessagesNotInAllowedRange",
    "TwinUpdatesNotInAllowedRange",
    "UnauthorizedOperationsNotInAllowedRange",
)
ACTIVE = 0
C2D = 1
D2C = 2
METHOD = 3
REJECTED = 4
TWIN = 5
UNAUTHORIZED = 6

# ruleTypes of Azure's deviceSecurityGroups that a device cannot observe
# (other protocols, the hub's own queue, an OS with users and processes):
# accepted so a pasted security group loads, reported as not evaluated.
HUB_ONLY = (
    "QueuePurgesNotInAllowedRange", "AmqpC2DMessagesNotInAllowedRange",
    "HttpC2DMessagesNotInAllowedRange", "AmqpC2DRejectedMessagesNotInAllowedRange",
    "HttpC2DRejectedMessagesNotInAllowedRange", "AmqpD2CMessagesNotInAllowedRange",
    "HttpD2CMessagesNotInAllowedRange", "FailedLocalLoginsNotInAllowedRange",
    "FileUploadsNotInAllowedRange", "ConnectionFromIpNotAllowed",
    "LocalUserNotAllowed", "ProcessNotAllowed",
)

_TOP = ("deviceId", "timeWindowRules", "allowlistRules", "denylistRules",
        "thresholdRules", "threatIntel", "certificates", "sas", "console",
        "foldWindowSize", "certExpiryWarningDays")


class ConfigError(ValueError):
    """Invalid configuration; str() is 'key: reason'."""


def too_big(exc):
    """The reason to give for a document the heap could not hold
    (MemoryError) or that nests deeper than the stack (RuntimeError)."""
    import gc
    gc.collect()  # free what the failed parse left behind
    if isinstance(exc, MemoryError):
        return "too large for this device's heap (a 64 KB board holds a few hundred threat-intel entries)"
    return "nested too deeply"


def _err(key, reason):
    raise ConfigError("%s: %s" % (key, reason))


def _bool(v, key):
    if v is not True and v is not False:
        _err(key, "must be true or false")
    return v


def _int(v, key):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        _err(key, "must be a whole number >= 0")
    return v


def _list(v, key):
    if not isinstance(v, list):
        _err(key, "must be a list")
    return v


def _obj(v, key):
    if not isinstance(v, dict):
        _err(key, "must be an object")
    return v


def _dur(v, key):
    try:
        s = parse_duration(v)
    except ValueError as e:
        _err(key, "%s (got %r)" % (e, v))
    if s <= 0:
        _err(key, "must be longer than zero")
    if s > 2592000:
        # a window that never ends is a rule that never fires
        _err(key, "must be at most P30D (got %r)" % (v,))
    return s


def _nets(values, key, warnings):
    # Two passes: count each family, then fill lists allocated once at
    # their exact size (growing a bytearray needs old + new on the heap).
    _list(values, key)
    n4 = 0
    for i in range(len(values)):
        v = values[i]
        k = "%s[%d]" % (key, i)
        if not isinstance(v, str):
            _err(k, "must be an IP address or CIDR text")
        try:
            net, plen, warn = ipaddr.parse_network(v)
        except ValueError as e:
            _err(k, "%s (got %r)" % (e, v))
        if warn:
            warnings.append("%s: %s" % (k, warn))
        if len(net) == 4:
            n4 += 1
    out = ipaddr.NetList(n4, len(values) - n4)
    for v in values:
        net, plen, warn = ipaddr.parse_network(v)
        out.add(net, plen)
    return out


def thumbprint_hex(v, key):
    """Normalize a thumbprint (config.md: 40 hex digits = SHA-1, 64 =
    SHA-256; colons, spaces and case ignored) to upper-case hex. Raises
    ConfigError naming `key` for anything else."""
    # expectedThumbprint: colons, spaces and case ignored (IoT Hub shows
    # upper-case hex without colons, openssl prints colon pairs).
    if not isinstance(v, str):
        _err(key, "must be hex text")
    h = v.replace(":", "").replace(" ", "").upper()
    for c in h:
        if c not in "0123456789ABCDEF":
            _err(key, "must be hex digits (got %r)" % c)
    if len(h) not in (40, 64):
        _err(key, "must be 40 hex digits (SHA-1) or 64 (SHA-256), got %d" % len(h))
    return h


class Config:
    """A validated configuration.

    device_id: str; windows: list of (counter index, min, max, seconds);
    allow: None (everything allowed) or an ipaddr.NetList; threat: an
    ipaddr.NetList (possibly empty); certificates: list of
    (path, expected thumbprint hex or None); sas_key: base64 text or None;
    console: bool; fold_s: seconds; expiry_days: int; warnings: list of str;
    version: the twin's $version or None. The document itself is not kept
    (on a board its parsed JSON can be larger than everything else).
    """


def parse(doc):
    """Validate a configuration document (a dict from JSON).

    Returns a Config. Raises ConfigError naming the first bad key, as in
    "timeWindowRules[1].timeWindowSize: bad duration unit 'X' (got 'PT5X')".
    Nothing is half-applied: the caller swaps configs only on success.
    """
    _obj(doc, "config")
    c = Config()
    c.warnings = []
    c.version = doc.get("$version")
    for k in doc:
        if k not in _TOP and not k.startswith("$"):
            _err(k, "unknown key (known: %s)" % ", ".join(_TOP))
    dev = doc.get("deviceId")
    if not isinstance(dev, str) or not dev or len(dev) > 128:
        _err("deviceId", "must be a non-empty string of at most 128 characters")
    c.device_id = dev
    c.windows = []
    seen = []
    rules = _list(doc.get("timeWindowRules", []), "timeWindowRules")
    for i in range(len(rules)):
        key = "timeWindowRules[%d]" % i
        r = _obj(rules[i], key)
        rt = r.get("ruleType")
        hub = rt in HUB_ONLY
        if rt not in WINDOW_RULES and not hub:
            _err(key + ".ruleType", "unknown ruleType %r" % (rt,))
        if rt in seen:
            _err(key + ".ruleType", "%s appears twice" % rt)
        seen.append(rt)
        for f in r:
            if f not in ("ruleType", "isEnabled", "minThreshold", "maxThreshold", "timeWindowSize", "displayName", "description", "valueType"):
                _err("%s.%s" % (key, f), "unknown key")
        en = _bool(r.get("isEnabled"), key + ".isEnabled")
        lo = _int(r.get("minThreshold"), key + ".minThreshold")
        hi = _int(r.get("maxThreshold"), key + ".maxThreshold")
        if lo > hi:
            _err(key + ".minThreshold", "is above maxThreshold (%d > %d)" % (lo, hi))
        size = _dur(r.get("timeWindowSize"), key + ".timeWindowSize")
        if hub:
            # validated like the others, so a pasted group is checked whole
            c.warnings.append("%s: %s is not observable on the device; not evaluated" % (key, rt))
        elif en:
            c.windows.append((WINDOW_RULES.index(rt), lo, hi, size))
    c.allow = None
    rules = _list(doc.get("allowlistRules", []), "allowlistRules")
    for i in range(len(rules)):
        key = "allowlistRules[%d]" % i
        r = _obj(rules[i], key)
        rt = r.get("ruleType")
        hub = rt in HUB_ONLY
        if rt != "ConnectionToIpNotAllowed" and not hub:
            _err(key + ".ruleType", "unknown ruleType %r" % (rt,))
        if rt in seen:
            _err(key + ".ruleType", "%s appears twice" % rt)
        seen.append(rt)
        for f in r:
            if f not in ("ruleType", "isEnabled", "allowlistValues", "displayName", "description", "valueType"):
                _err("%s.%s" % (key, f), "unknown key")
        en = _bool(r.get("isEnabled"), key + ".isEnabled")
        if hub:
            # user names and processes are not IPs: check the shape only
            vals = _list(r.get("allowlistValues"), key + ".allowlistValues")
            for j in range(len(vals)):
                if not isinstance(vals[j], str):
                    _err("%s.allowlistValues[%d]" % (key, j), "must be text")
            c.warnings.append("%s: %s is not observable on the device; not evaluated" % (key, rt))
            continue
        nets = _nets(r.get("allowlistValues"), key + ".allowlistValues", c.warnings)
        if en:
            c.allow = nets
    for k in ("denylistRules", "thresholdRules"):
        if _list(doc.get(k, []), k):
            c.warnings.append("%s: not evaluated on the device" % k)
    ti = _obj(doc.get("threatIntel", {}), "threatIntel")
    for f in ti:
        if f not in ("ips", "file"):
            _err("threatIntel." + f, "unknown key")
    c.threat = _nets(ti.get("ips", []), "threatIntel.ips", c.warnings)
    if "file" in ti:
        if not isinstance(ti["file"], str):
            _err("threatIntel.file", "must be a path")
        c.warnings.append("threatIntel.file: compiled range tables are not supported yet; ignored")
    c.certificates = []
    certs = _list(doc.get("certificates", []), "certificates")
    for i in range(len(certs)):
        key = "certificates[%d]" % i
        e = _obj(certs[i], key)
        for f in e:
            if f not in ("path", "expectedThumbprint"):
                _err("%s.%s" % (key, f), "unknown key")
        p = e.get("path")
        if not isinstance(p, str) or not p:
            _err(key + ".path", "must be a file path")
        tp = e.get("expectedThumbprint")
        if tp is not None:
            tp = thumbprint_hex(tp, key + ".expectedThumbprint")
        c.certificates.append((p, tp))
    sas = _obj(doc.get("sas", {}), "sas")
    for f in sas:
        if f != "deviceKey":
            _err("sas." + f, "unknown key")
    c.sas_key = sas.get("deviceKey")
    if c.sas_key is not None:
        _b64check(c.sas_key, "sas.deviceKey")
    c.console = _bool(doc.get("console", True), "console")
    c.fold_s = _dur(doc.get("foldWindowSize", "PT1M"), "foldWindowSize")
    c.expiry_days = _int(doc.get("certExpiryWarningDays", 30), "certExpiryWarningDays")
    return c


def _b64check(v, key):
    # binascii.a2b_base64 skips invalid characters silently: check first.
    if not isinstance(v, str) or not v or len(v) % 4:
        _err(key, "must be base64 text (length a multiple of 4)")
    n = len(v)
    for i in range(n):
        ch = v[i]
        if not ("A" <= ch <= "Z" or "a" <= ch <= "z" or "0" <= ch <= "9" or ch in "+/"):
            if ch == "=" and i >= n - 2 and (i == n - 1 or v[n - 1] == "="):
                continue
            _err(key, "is not base64 (character %d)" % i)
