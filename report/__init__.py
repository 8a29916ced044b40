"""spacetime: report."""
