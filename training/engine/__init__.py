"""engine of the trainer."""
