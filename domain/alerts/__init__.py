"""Alert rules and what they make: triggers, deliveries with retries, in-app notices (pure model)."""
