from microagent.duration import parse_duration
from mphelp import raises


def test_azure_forms():
    assert parse_duration("PT05M") == 300
    assert parse_duration("PT1H") == 3600
    assert parse_duration("PT30S") == 30
    assert parse_duration("PT15M") == 900
    assert parse_duration("P1D") == 86400
    assert parse_duration("P1DT1H1M1S") == 90061
    assert parse_duration("P2W") == 1209600
    assert parse_duration("pt5m") == 300


def test_refused_forms():
    for bad in ("", "P", "PT", "5M", "PT5", "PT5X", "P1M", "P1Y", "PT1.5S", "PT-5S", "PTM",
                "PT5S5M", "PT5M5M", "P1WT1H", "P1DT", "PT1H T", 300, None):
        raises(ValueError, parse_duration, bad)
    assert "years and months" in str(raises(ValueError, parse_duration, "P1M"))
