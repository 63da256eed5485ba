"""Choosing profiles from measurements: task files, runs files, collecting runs, the search over members,
k and vote, and building a profile."""
