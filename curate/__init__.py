"""spacetime: curate."""
