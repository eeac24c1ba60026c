# eccentric_det: `make demo` runs the main job, `make test` runs the tests. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= $(CURDIR)/datasets

.PHONY: install data test demo bench clean
install:
	bash install/install.sh $(VENV)

data: install
	@test -f $(DETECTRON2_DATASETS)/fashion_det/DONE || \
	  $(PY) datasets/prepare_fashion_det.py --backgrounds datasets/_darknet --out $(DETECTRON2_DATASETS)/fashion_det

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) tools/demo.py --config-file configs/FashionDet/dynamic_ecc_vr_joint.yaml --video-input default --output output/demo \
		--confidence-threshold 0.65 --agnostic-iou 0.5 --label-decay 0.8  # model and filter chosen on training-item videos: docs/benchmarks.md

bench: install
	$(PY) benchmarks/bench_split.py --output output/bench_split.json

clean:
	rm -rf output
