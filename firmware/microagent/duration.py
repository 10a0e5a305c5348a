# ISO 8601 durations for time windows (ISO 8601-1:2019 s5.5.2), as Azure's
# deviceSecurityGroups timeWindowSize uses them: "PT05M", "PT1H", "PT30S".


def parse_duration(text):
    """Seconds in an ISO 8601 duration.

    text: str of the form P[nW] or P[nD][T[nH][nM][nS]] with whole numbers
    (leading zeros allowed: "PT05M"). Years and months are refused (their
    length varies), as are fractions, signs and an empty "P"/"PT".
    Returns int seconds. Raises ValueError naming what is wrong.
    """
    if not isinstance(text, str) or len(text) < 3 or text[0] not in "Pp":
        raise ValueError("not an ISO 8601 duration (e.g. PT05M)")
    total = 0
    num = -1
    in_time = False
    seen = ""
    units_date = "WD"
    units_time = "HMS"
    mult = {"W": 604800, "D": 86400, "H": 3600, "M": 60, "S": 1}
    for c in text[1:].upper():
        if "0" <= c <= "9":
            num = (0 if num < 0 else num * 10) + ord(c) - 48
            continue
        if c == "T":
            if in_time or num >= 0:
                raise ValueError("misplaced 'T' in duration")
            in_time = True
            continue
        if num < 0:
            raise ValueError("duration unit '%s' without a number" % c)
        if c not in (units_time if in_time else units_date):
            if c in "YM" and not in_time:
                raise ValueError("years and months are not fixed lengths; use days")
            raise ValueError("bad duration unit '%s'" % c)
        # units must come in order, each once
        order = "WDHMS"
        if seen and order.find(c) <= order.find(seen[-1]):
            raise ValueError("duration units out of order or repeated")
        seen += c
        total += num * mult[c]
        num = -1
    if num >= 0:
        raise ValueError("duration number without a unit")
    if not seen:
        raise ValueError("empty duration")
    if in_time and seen[-1] not in units_time:
        raise ValueError("'T' without hours, minutes or seconds")
    if "W" in seen and len(seen) > 1:
        raise ValueError("weeks cannot be combined with other units")
    return total
