# The agent's SAS token check (alerts.md: sas_token_expired,
# sas_token_invalid_signature). Agent.check_sas() imports this lazily, so a
# build without credential checks simply leaves it out.
from . import sas

PENDING = 4  # tokens kept for a verdict while the clock is not set


def check(agent, token):
    """Check one SAS token the device uses, for `agent` (an Agent).

    token: str. Reports sas_token_expired (details resource, expiry) when
    the device clock is set and at or past se; with sas.deviceKey
    configured, sas_token_invalid_signature (details resource) when sig is
    not HMAC-SHA256(key, sr + "\\n" + se); an unparseable token is one
    agent_error (operation "check_sas", error saying what is wrong).
    Details never contain the key, sig or token. While the clock is not
    set the expiry verdict waits (agent.utc_if_set() reports
    clock_not_set) and is given by the agent's checks once it is set, for
    each of the last PENDING distinct tokens (their resource and se only)
    checked meanwhile.
    """
    try:
        t = sas.parse(token)
    except ValueError as e:
        msg = "SAS token: %s" % (e,)
        agent.report("agent_error", (("operation", "check_sas"), ("error", msg)), ("check_sas", msg))
        return
    now = agent.utc_if_set()
    if now is None:
        _hold(agent, t.resource, t.se)
    else:
        _expiry(agent, t.resource, t.se, now)
    key = agent.cfg.sas_key if agent.cfg is not None else None
    if key and not sas.verify(t, sas.decode_key(key)):
        agent.report("sas_token_invalid_signature", (("resource", t.resource),))


def _hold(agent, resource, se):
    # keep (resource, se) for a verdict once the clock is set: the last
    # PENDING distinct ones, oldest dropped first
    p = getattr(agent, "_sas_pending", None) or []
    t = (resource, se)
    if t in p:
        p.remove(t)
    elif len(p) >= PENDING:
        p.pop(0)
    p.append(t)
    agent._sas_pending = p
    if _pending not in agent.checks:
        agent.checks.append(_pending)


def _expiry(agent, resource, se, now):
    if sas.expired(se, now):
        agent.report("sas_token_expired", (("resource", resource), ("expiry", sas.iso8601(sas.se_value(se)))))


def _pending(agent):
    # in agent.checks: gives the verdicts tokens got none for while the
    # device clock was not set, as soon as it is set (in the order seen)
    p = getattr(agent, "_sas_pending", None)
    if not p:
        return
    now = agent.utc_if_set()
    if now is None:
        return
    agent._sas_pending = None
    for resource, se in p:
        _expiry(agent, resource, se, now)
