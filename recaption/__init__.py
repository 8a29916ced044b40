"""spacetime: recaption."""
