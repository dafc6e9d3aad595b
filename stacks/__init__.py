"""Stack configuration and the composition of what each cluster role receives."""
