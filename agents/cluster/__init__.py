"""The cluster engine: site agents as Ray actors, their peer links, and the Ray executor."""
