# The finding catalogue and the console line (../shared/spec/alerts.md), and
# the fold log that turns repeats of one type and key into one line.
import json

from . import platform

try:  # CPython escapes non-ASCII by default; MicroPython writes UTF-8
    json.dumps("", ensure_ascii=False)

    def _js(v):
        return json.dumps(v, ensure_ascii=False)
except TypeError:
    _js = json.dumps

# type: (display name, kind, severity). Device-side types only: this module
# runs on the board; the hub-side rows live in the host tools.
CATALOGUE = {
    "suspicious_ip": ("Communication with a suspicious IP address detected", "alert", "high"),
    "cert_thumbprint_mismatch": ("X.509 device certificate thumbprint mismatch", "alert", "medium"),
    "cert_expired": ("X.509 certificate expired", "alert", "medium"),
    "sas_token_expired": ("Expired SAS Token", "alert", "low"),
    "sas_token_invalid_signature": ("Invalid SAS Token signature", "alert", "low"),
    # Customizable alerts: alerts.md gives no severity; Defender for IoT
    # raises custom alerts at low severity.
    "ActiveConnectionsNotInAllowedRange": ("Number of active connections is not in the allowed range", "alert", "low"),
    "MqttC2DMessagesNotInAllowedRange": ("Number of cloud to device messages in MQTT protocol is not in the allowed range", "alert", "low"),
    "ConnectionToIpNotAllowed": ("Outbound connection to an IP that isn't allowed", "alert", "low"),
    "MqttD2CMessagesNotInAllowedRange": ("Number of device to cloud messages in MQTT protocol outside the allowed range", "alert", "low"),
    "DirectMethodInvokesNotInAllowedRange": ("Number of direct method invokes outside the allowed range", "alert", "low"),
    "MqttC2DRejectedMessagesNotInAllowedRange": ("Number of rejected cloud to device messages in MQTT protocol outside the allowed range", "alert", "low"),
    "TwinUpdatesNotInAllowedRange": ("Number of updates to twin modules outside the allowed range", "alert", "low"),
    "UnauthorizedOperationsNotInAllowedRange": ("Number of unauthorized operations outside the allowed range", "alert", "low"),
    # Beyond the catalogue (alerts.md invites these; listed in README.md).
    "cert_not_yet_valid": ("X.509 certificate not yet valid", "alert", "medium"),
    "cert_expiring": ("X.509 certificate expires soon", "recommendation", "low"),
    "clock_not_set": ("Device clock is not set", "recommendation", "low"),
    "agent_error": ("Security agent internal error", "alert", "low"),
    # IoT Hub MQTT watcher (docs/mqtt.md)
    "mqtt_malformed": ("Malformed IoT Hub MQTT message", "alert", "low"),
    "mqtt_unexpected": ("MQTT message the device did not ask for", "alert", "medium"),
    "config_refused": ("Security agent configuration refused", "alert", "low"),
}


def format_line(ftype, device, utc, count, details):
    """The console line for one finding (alerts.md, "The console line").

    ftype: catalogue type; device: device id; utc: int seconds since 1970;
    count: occurrences the line stands for; details: sequence of (key, value)
    pairs, printed in that order. Returns the line without newline.
    Raises KeyError for a type not in CATALOGUE.
    """
    name, kind, sev = CATALOGUE[ftype]
    d = ",".join(_js(k) + ":" + _js(v) for k, v in details)
    return "%s {\"type\":%s,\"name\":%s,\"kind\":\"%s\",\"source\":\"device\",\"severity\":\"%s\",\"device\":%s,\"time\":\"%s\",\"count\":%d,\"details\":{%s}}" % (
        "ALERT" if kind == "alert" else "RECOMMENDATION",
        _js(ftype), _js(name), kind, sev, _js(device),
        platform.iso8601(utc), count, d)


class FoldLog:
    """Findings with folding of repeats, in fixed memory.

    The first occurrence of a (type, key) is emitted at once (count 1), so a
    user sees it as it happens; repeats inside the next `fold_s` seconds are
    counted and emitted as one line with `count` when that fold window ends.
    `slots` bounds the memory: with every slot busy, a new key is emitted at
    once and not tracked (nothing is lost, only not folded).
    emit(ftype, utc, count, details) receives each line's finding.
    """

    def __init__(self, emit, fold_s=60, slots=16):
        self.emit = emit
        self.fold_s = fold_s
        self._keys = [None] * slots
        self._until = [0] * slots
        self._count = [0] * slots
        self._details = [None] * slots
        self.next_due = -1  # earliest fold end in agent seconds, -1 if none

    def report(self, now_s, utc, ftype, key, details):
        """One occurrence at agent second `now_s` (UTC `utc`): emitted at
        once if (ftype, key) is not being folded, else counted."""
        keys = self._keys
        free = -1
        for i in range(len(keys)):
            k = keys[i]
            if k is None:
                if free < 0:
                    free = i
            elif k[0] == ftype and k[1] == key:
                self._count[i] += 1
                return
        self.emit(ftype, utc, 1, details)
        if free >= 0 and self.fold_s > 0:
            keys[free] = (ftype, key)
            self._until[free] = now_s + self.fold_s
            self._count[free] = 0
            self._details[free] = details
            if self.next_due < 0 or self._until[free] < self.next_due:
                self.next_due = self._until[free]

    def flush(self, now_s, utc, everything=False):
        """Emit the folded repeats whose fold window ended by `now_s`
        (all of them with everything=True) and free their slots."""
        due = -1
        keys = self._keys
        for i in range(len(keys)):
            k = keys[i]
            if k is None:
                continue
            if everything or self._until[i] <= now_s:
                if self._count[i]:
                    self.emit(k[0], utc, self._count[i], self._details[i])
                keys[i] = None
                self._details[i] = None
            elif due < 0 or self._until[i] < due:
                due = self._until[i]
        self.next_due = due
