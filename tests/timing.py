"""How long a test waits before it calls something hung. A guard, never a speed check: generous enough that
the suite passes on a machine whose cores another job keeps busy (issue 27); a real hang still fails."""

HANG_S = 600
