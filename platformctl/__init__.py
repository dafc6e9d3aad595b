"""platformctl: the engineers' command line for the offline plan."""
