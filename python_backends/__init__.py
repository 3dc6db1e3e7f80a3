"""Python-backend models copied byte for byte into generated repositories."""
