"""The curation funnel: readers, scorers, steps and the Spark jobs that compose them."""
