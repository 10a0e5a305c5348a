"""Host tools for microagent: run the agent on the MicroPython unix port,
check SAS tokens and certificates, replay scenarios."""
