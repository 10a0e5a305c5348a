# An IoT Hub device app for the MicroPython unix port, with the security
# micro-agent watching its MQTT session. The app is boards/common/hubapp.py
# (the same on every board); this file is the board's part, and the unix
# port's network and clock are the host's. Copy main.py and hubapp.py into
# a folder, write device.json (docs/mqtt.md) and run:
#     micropython main.py [device.json]
# with umqtt.simple and microagent on MICROPYPATH (make deps && make stage
# put both in build/unix/lib). Ctrl-C (SIGINT) stops it.
import sys

SETTINGS = sys.argv[1] if len(sys.argv) > 1 else "device.json"

try:
    import hubapp
except ImportError as e:
    # run from the repository: the shared app is in boards/common
    if "hubapp" not in str(e):
        raise
    sys.path.append(__file__.rsplit("/", 1)[0] + "/../common" if "/" in __file__ else "../common")
    import hubapp


def main(path=SETTINGS):
    hubapp.run(path)


if __name__ == "__main__":
    main()
