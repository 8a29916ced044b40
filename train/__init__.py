"""spacetime: train."""
