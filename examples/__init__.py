"""Example specs and the model files they point at; `tritonkit init` copies them."""
