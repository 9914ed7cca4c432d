# The README's two commands. Both create the environment first, from nothing but python3 and Java.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_CORPUS ?= build/demo_corpus
DEMO_RUN ?= runs/demo

.PHONY: demo test env system-deps schemas clean

# Label Studio pins many packages, so its server lives in its own venv (annotation/server.py); the tests
# start a real one. Only `make test` needs it.
LS_EXE := build/label-studio-venv/bin/label-studio

env: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages: a CJK font (Chinese text in generated data) and Chromium (the report test opens the
# report in it). Skipped, with a note, where apt is not ours to use.
SYSTEM_PACKAGES := fonts-wqy-microhei chromium
system-deps:
	@missing=""; fc-list :lang=zh 2>/dev/null | grep -q . || missing="fonts-wqy-microhei"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing"; \
	  else echo "note: missing Debian packages:$$missing (apt-get install $(SYSTEM_PACKAGES))"; fi; \
	fi

# The corpus -> the funnel through stage 3 (alt text, checked) and export -> the shards read back with webdataset
# and HF datasets -> a TOY model trained a few steps on them, one sample image -> the report shows it all.
demo: system-deps $(STAMP)
	$(BIN)/python -m synthetic.sample_corpus --out $(DEMO_CORPUS)
	$(BIN)/sluice curate run --input $(DEMO_CORPUS)/images --output $(DEMO_RUN) --until export
	$(BIN)/python -m sluice.demo --run $(DEMO_RUN)

$(LS_EXE): $(STAMP)
	$(BIN)/sluice annotate server install

test: system-deps $(STAMP) $(LS_EXE)
	$(BIN)/python -m pytest -q

schemas: $(STAMP)
	$(BIN)/python -m schemas.jsonschema

clean:
	rm -rf $(VENV) build runs
