"""Anomaly detection's pure model: robust baselines, the three signals, and incidents."""
