# Freeze the agent into a MicroPython firmware build, so its bytecode runs
# from flash and costs the board's heap only the agent's state:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
# (docs.micropython.org "MicroPython manifest files"). The unix-port-only
# modules (unixmain, procnet: /proc/net; replay: scenario replay) stay out;
# ussl.py is the unix port's shim for umqtt.simple 1.3 and is not needed on
# a board that uses the current umqtt.simple with ssl=SSLContext.
package(
    "microagent",
    files=[
        "__init__.py", "agent.py", "alerts.py", "certcheck.py", "config.py",
        "der.py", "duration.py", "hmacsha.py", "iothub.py", "ipaddr.py",
        "mqttwatch.py", "pem.py", "platform.py", "sas.py", "sascheck.py",
        "secmsg.py", "sockwrap.py", "utf8.py", "x509.py",
    ],
    opt=3,
)
