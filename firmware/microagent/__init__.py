# microagent: an on-device security micro-agent for MicroPython.
# Kept tiny: importing the package loads nothing else until it is used.
VERSION = "0.1.0"

_agent = None


def start(cfg="microagent.json", clock=None, out=None):
    """Start the device's agent and make it the one socket() reports to.

    cfg: path of a JSON configuration (config.md) or the document itself.
    clock, out: see agent.Agent. Never raises: a configuration that cannot
    be read or is invalid is printed as one "microagent: config error:"
    line and the agent runs without rules until configure() succeeds.
    Returns the Agent.
    """
    global _agent
    from .agent import Agent
    a = Agent(clock, out) if out else Agent(clock)
    try:
        if isinstance(cfg, str):
            a.load(cfg)
        else:
            a.configure(cfg)
    except Exception as e:
        a.out("microagent: config error: %s" % (e,))
    _agent = a
    return a


def current():
    """The agent start() made, or None. (Not named `agent`: that is the
    submodule microagent.agent.)"""
    return _agent


def socket(*args):
    """socket.socket(*args) whose connections the started agent watches
    (a plain socket if start() was not called)."""
    import socket as _s
    if _agent is None:
        return _s.socket(*args)
    from .sockwrap import MonitoredSocket
    return MonitoredSocket(_agent, _s.socket(*args))
