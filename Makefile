# The whole set-up on a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := data/scenes
# 400 held-out natural scenes (seed 1; the demo model trained on seed 0)
DEMO_SCENES = $(PY) -m model.scenes --out $(DEMO_DATA) --images 400 --size 192 --seed 1 --split val \
	--style natural
DEMO_INDEX := data/index-demo
DEMO_CHECKPOINT := assets/demo_encoder.pt
# The demo model's training run: log.jsonl and two snapshots (epochs 20 and 40 of 60; the final
# model is DEMO_CHECKPOINT). The app's Timeline tab shows it; the Compare tab compares the final
# model with the epoch-20 snapshot, indexed over the same scenes.
DEMO_RUN := assets/demo_run
DEMO_EARLY := $(DEMO_RUN)/snapshots/encoder-epoch0020.pt
DEMO_EARLY_INDEX := data/index-demo-epoch20

# COCO val2017 (make coco CHECKPOINT=FILE_OR_URL): data under COCO_ROOT, the index in COCO_INDEX.
# A CHECKPOINT URL is downloaded into $(COCO_ROOT)/checkpoints/; the command records the model's
# path in $(COCO_ROOT)/checkpoints/last-checkpoint.txt, and the app is started with that path.
COCO_ROOT := data/coco
COCO_INDEX := data/index-coco
CHECKPOINT ?=

.PHONY: demo test lint chromium coco

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	touch $(STAMP)

# Scenes and index are cached: a second `make demo` goes straight to the app. The scenes command
# is a no-op when the folder holds these scenes, and rewrites them when they are of another style
# or generator version (a newer JSON, so the indexes follow). The index is rebuilt (replaced
# atomically) when the checkpoint or the scenes are newer, e.g. after a pull that updates them,
# or when it is of an older index format: dated back first, then remade by a second make (which
# looks at the file afresh).
demo: $(STAMP)
	$(DEMO_SCENES)
	@for index in $(DEMO_INDEX) $(DEMO_EARLY_INDEX); do \
		$(PY) -c "import sys; from indexing.store.directory import read_manifest; read_manifest(sys.argv[1])" \
			$$index 2>/dev/null || touch -c -d @0 $$index/manifest.json; done
	@$(MAKE) -q $(DEMO_INDEX)/manifest.json $(DEMO_EARLY_INDEX)/manifest.json || \
		$(MAKE) --no-print-directory $(DEMO_INDEX)/manifest.json $(DEMO_EARLY_INDEX)/manifest.json
	$(PY) app.py --index $(DEMO_INDEX) --checkpoint $(DEMO_CHECKPOINT) \
		--compare $(DEMO_EARLY_INDEX) --run $(DEMO_RUN)

$(DEMO_DATA)/annotations/instances_val.json: | $(STAMP)
	$(DEMO_SCENES)

$(DEMO_INDEX)/manifest.json: $(DEMO_CHECKPOINT) $(DEMO_DATA)/annotations/instances_val.json | $(STAMP)
	$(PY) -m indexing build --checkpoint $(DEMO_CHECKPOINT) --images $(DEMO_DATA)/val \
		--annotations $(DEMO_DATA)/annotations/instances_val.json --out $(DEMO_INDEX)

$(DEMO_EARLY_INDEX)/manifest.json: $(DEMO_EARLY) $(DEMO_DATA)/annotations/instances_val.json | $(STAMP)
	$(PY) -m indexing build --checkpoint $(DEMO_EARLY) --images $(DEMO_DATA)/val \
		--annotations $(DEMO_DATA)/annotations/instances_val.json --out $(DEMO_EARLY_INDEX)

# Download, verify and unpack COCO val2017, index it, start the app. Without CHECKPOINT it
# prepares the data, says where the authors publish their models, and stops (status 1).
# A second run skips what is done (verified data, an up-to-date index) and starts the app.
coco: $(STAMP)
	$(PY) -m indexing coco --root $(COCO_ROOT) --out $(COCO_INDEX) \
		$(if $(CHECKPOINT),--checkpoint '$(CHECKPOINT)')
	$(PY) app.py --index $(COCO_INDEX) --checkpoint "$$(cat $(COCO_ROOT)/checkpoints/last-checkpoint.txt)"

test: $(STAMP) chromium
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Browser tests drive Debian's chromium; Playwright never downloads a browser of its own.
chromium:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
