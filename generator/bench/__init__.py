"""Load testing of served models."""
