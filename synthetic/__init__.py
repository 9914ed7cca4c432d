"""Synthetic data: the demo corpus (`python -m synthetic.sample_corpus`), hostile inputs for ingest, the toy
shapes world the trainer is judged on, near-duplicate sets, and synthetic pools and run folders. It builds
on the lower layers (schemas, plumbing, curation, training) and nothing above them."""
