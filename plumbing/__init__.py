"""The ground floor above `schemas`: config loading, run folders and markers, deps, table reading, logging,
progress and the CLI's shared options. It imports only `schemas`; `curation`, `annotation` and `training`
build on it."""
