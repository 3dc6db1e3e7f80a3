"""A fixed-pace stand-in for an LLM engine, for measuring clients and the gateway (not part of the product)."""
