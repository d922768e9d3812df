"""Output formats of the reports: one module per format, each a pure function to bytes.

Every writer is deterministic: the same report gives the same bytes (no clock, no random ids,
fixed metadata dates), so a closed period's files can be sealed with their SHA-256.
"""
