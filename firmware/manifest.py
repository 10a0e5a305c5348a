# Freeze the agent into a MicroPython firmware build, so its bytecode runs
# from flash and costs the board's heap only the agent's state:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
# (see docs.micropython.org "MicroPython manifest files"). Modules only the
# unix port uses (unixmain, procnet) are left out.
package("microagent", opt=3)
