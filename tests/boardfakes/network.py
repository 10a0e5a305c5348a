# Stand-in for an ESP32's `network` module on the unix port (no board can
# run here): a Wi-Fi station that connects on the attempt fakes.json
# names ("wifi_ok_on", default 1), and prints each attempt.
import json

STA_IF = 0


def plan():
    try:
        with open("fakes.json") as f:
            return json.load(f)
    except OSError:
        return {}


class WLAN:
    attempts = 0

    def __init__(self, interface):
        self._up = False

    def active(self, on=None):
        return True

    def isconnected(self):
        return self._up

    def connect(self, ssid, password):
        WLAN.attempts += 1
        print("fake: Wi-Fi connect %s (attempt %d)" % (ssid, WLAN.attempts))
        self._up = WLAN.attempts >= plan().get("wifi_ok_on", 1)

    def disconnect(self):
        self._up = False

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
