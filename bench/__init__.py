"""`make bench`: each bench/bench_<name>.py has run() -> list of
(metric, value, unit, note) rows; this prints them as one table."""
