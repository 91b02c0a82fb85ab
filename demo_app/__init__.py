"""A demo shop that publishes events, and a receiver that verifies what it gets."""
