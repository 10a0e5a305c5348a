# An IoT Hub device app for an ESP32 (MicroPython >= 1.23), with the
# security micro-agent watching its MQTT session. Copy to the board's flash:
#     main.py, hubapp.py (boards/common), device.json (docs/mqtt.md),
#     microagent.json, certs/*.der, lib/umqtt/simple.py (mip install
#     umqtt.simple), lib/microagent/*.mpy (mpy-cross -march=xtensawin, see
#     boards/esp32/board.json)
# and reset. This file is the board's part (Wi-Fi, clock); the app is
# hubapp.py, the same on every board. Both are tried again, with the app's
# backoff, until they work: the board never stops at boot for want of them.
import time

SETTINGS = "device.json"
_wlan = None


def network_up(s):
    """Wi-Fi station up (settings "wifi": {"ssid": ..., "password": ...}),
    waiting at most "wifiTimeout" s (default 20). Returns at once when the
    station is connected. Raises OSError when it does not connect in time
    (the app backs off and calls again)."""
    global _wlan
    import network
    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
    if _wlan.isconnected():
        return
    _wlan.active(True)
    w = s["wifi"]
    _wlan.connect(w["ssid"], w["password"])
    t0 = time.ticks_ms()
    while not _wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), t0) > s.get("wifiTimeout", 20) * 1000:
            try:
                _wlan.disconnect()   # stop this attempt; the next one starts afresh
            except OSError:
                pass
            raise OSError("Wi-Fi: no connection to %s" % w["ssid"])
        time.sleep_ms(100)
    print("app: Wi-Fi up, address %s" % _wlan.ifconfig()[0])


def set_clock(s):
    """The clock from NTP (settings "ntp": host, default pool.ntp.org).
    An ESP32's RTC starts near 2000-01-01: until this works the agent
    reports clock_not_set and gives no expiry verdicts, and the app makes
    no SAS token. Raises OSError when the server does not answer (the app
    tries again before each connect and every "ntpRetry" s)."""
    import ntptime
    if "ntp" in s:
        ntptime.host = s["ntp"]
    ntptime.settime()   # UTC into the RTC


def main(path=SETTINGS):
    import hubapp
    hubapp.run(path, network_up, set_clock)


if __name__ == "__main__":
    main()
