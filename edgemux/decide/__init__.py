"""The decision (pure): the SLM-MUX rule, token-confidence votes, exact early-stop bounds, calibration levels."""
