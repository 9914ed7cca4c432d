# The README's two commands. Both create the environment first, from nothing but python3 and Java.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_CORPUS ?= build/demo_corpus
DEMO_RUN ?= runs/demo

.PHONY: demo test env system-deps schemas clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# A CJK font for rendering Chinese text in the sample corpus; skipped where apt is not ours to use.
system-deps:
	@if ! fc-list :lang=zh 2>/dev/null | grep -q . ; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null) || echo "warning: no CJK font installed"; \
	  else echo "note: no CJK font found; install fonts-wqy-microhei for Chinese text rendering"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/python -m tools.sample_corpus --out $(DEMO_CORPUS)
	$(BIN)/sluice curate run --input $(DEMO_CORPUS)/images --output $(DEMO_RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -q

schemas: $(STAMP)
	$(BIN)/python -m schemas.jsonschema

clean:
	rm -rf $(VENV) build runs
