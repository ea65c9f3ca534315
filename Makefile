# sarreg developer tasks.  `make demo` (first run installs everything), `make test`.
#
# make install   .venv with PyTorch (CPU build when there is no CUDA), GDAL bindings matching the system
#                libgdal, and sarreg in editable mode with its test extras. Idempotent: a stamp file
#                (.venv/.installed) is rebuilt only when setup.cfg / pyproject.toml / constraints change.
# make test      run the test suite (pytest's "no tests collected" counts as success).
# make demo      generate sample scenes (samples/make_samples.py) and run sarreg on them.
# make clean     remove demo output and caches;  make distclean  also removes .venv.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SARREG := $(VENV)/bin/sarreg
STAMP := $(VENV)/.installed

# No CUDA (no working nvidia-smi): pin the CPU build of torch through a constraints file, so pip never pulls
# a multi-GB CUDA build. Extra pip arguments for torch (e.g. an --index-url for CPU wheels) via TORCH_PIP_ARGS.
HAVE_CUDA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
CONSTRAINTS := $(if $(HAVE_CUDA),,-c constraints-cpu.txt)
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

DEMO_OUT ?= demo_out
MODEL ?= models/sarreg_fast_sar_v5.pt
EXTRACT_MODEL ?= models/sarreg_fast_sar_v5xa.pt
QGIS ?= yes
QGIS_PYTHON ?= /usr/bin/python3
SHOT_DIR ?= build/qgis_screenshot

.PHONY: help install qgis-system test demo qgis-plugin qgis-screenshot clean distclean

help:
	@echo "make install    create .venv and install sarreg (+ torch, GDAL bindings, test extras)"
	@echo "make test       run the test suite"
	@echo "make demo       generate sample SAR scenes and run sarreg on them (outputs in $(DEMO_OUT)/)"
	@echo "make qgis-plugin      build the QGIS plugin zip dist/sarreg_qgis.zip"
	@echo "make qgis-screenshot  render docs/qgis_screenshot.png headless with QGIS"
	@echo "make clean      remove $(DEMO_OUT)/ and caches;  make distclean  also removes $(VENV)/"

install: qgis-system $(STAMP)

# QGIS for the plugin (qgis/sarreg_qgis) and its tests: optional for sarreg itself, so never fatal as non-root
qgis-system:
	@if [ "$(QGIS)" = no ] || command -v qgis_process >/dev/null 2>&1; then exit 0; fi
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	  echo "==> QGIS not found (no qgis_process): installing qgis python3-qgis qgis-providers with apt-get"
	  export DEBIAN_FRONTEND=noninteractive
	  # optional (only the QGIS plugin tests need it): a failed install warns instead of failing make install
	  { apt-get update -q && apt-get install -y -q --no-install-recommends qgis python3-qgis qgis-providers; } \
	    || echo "make install: warning: QGIS could not be installed; the QGIS plugin tests will be skipped" >&2
	else
	  echo "make install: QGIS is not installed (no qgis_process); the QGIS plugin tests will be skipped." >&2
	  echo "  To run them: sudo apt-get install qgis python3-qgis qgis-providers (or make install QGIS=no to hide this)" >&2
	fi

$(STAMP): setup.cfg pyproject.toml constraints-cpu.txt
	@t0=$$(date +%s)
	if ! command -v gdal-config >/dev/null 2>&1; then
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	    echo "==> system GDAL not found (no gdal-config): installing gdal-bin libgdal-dev with apt-get"
	    export DEBIAN_FRONTEND=noninteractive
	    apt-get update -q
	    apt-get install -y -q --no-install-recommends gdal-bin libgdal-dev
	  else
	    echo "make install: the system GDAL library is missing (no gdal-config on PATH)." >&2
	    echo "  Install it first, e.g. on Debian/Ubuntu:  sudo apt-get install gdal-bin libgdal-dev" >&2
	    echo "  (conda: conda install -c conda-forge gdal), then run make install again." >&2
	    exit 1
	  fi
	fi
	gdal_version=$$(gdal-config --version)
	if [ ! -x "$(PY)" ]; then
	  [ -n "$(PYTHON)" ] || { echo "make install: python3.11 not found" >&2; exit 1; }
	  "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	    || { echo "make install: $(PYTHON) is older than Python 3.11" >&2; exit 1; }
	  echo "==> creating $(VENV) with $(PYTHON)"
	  "$(PYTHON)" -m venv "$(VENV)"
	fi
	echo "==> pip, setuptools, wheel, numpy"
	$(PIP) install -q --upgrade pip "setuptools>=61" wheel
	$(PIP) install -q $(CONSTRAINTS) numpy
	echo "==> torch ($(if $(HAVE_CUDA),CUDA machine: default build,no CUDA: CPU build pinned by constraints-cpu.txt))"
	$(PIP) install -q $(CONSTRAINTS) $(TORCH_PIP_ARGS) "torch>=2.6,<3"
	echo "==> GDAL Python bindings $$gdal_version (must match the system libgdal)"
	$(PIP) install -q --no-build-isolation $(CONSTRAINTS) "gdal==$$gdal_version"
	echo "==> sarreg (editable) with test extras (pytest, OpenVINO)"
	$(PIP) install -q --no-build-isolation $(CONSTRAINTS) -e ".[test]"
	$(PY) -c 'import sys, torch, numpy, rasterio, cv2, sarreg; from osgeo import gdal, gdal_array; print("sarreg", sarreg.__version__, "| python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.version.cuda, "| numpy", numpy.__version__, "| rasterio", rasterio.__version__, "| GDAL", gdal.__version__, "| opencv", cv2.__version__)'
	touch "$(STAMP)"
	echo "==> installed in $$(( $$(date +%s) - t0 )) s; console script: $(SARREG)"

test: install
	@rc=0; $(PY) -m pytest -q --durations=15 $(PYTEST_ARGS) || rc=$$?
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (treated as success)"; rc=0; fi
	exit $$rc

demo: install
	@for m in "$(MODEL)" "$(EXTRACT_MODEL)"; do if [ ! -f "$$m" ]; then
	  echo "make demo: no trained model at $$m." >&2
	  echo "  sarreg ships its model in models/; this checkout has none yet. Train one with 'sarreg train'" >&2
	  echo "  or pass other checkpoints: make demo MODEL=register.pt EXTRACT_MODEL=extract.pt" >&2
	  exit 1
	fi; done
	mkdir -p "$(DEMO_OUT)"
	echo "==> generating sample scenes in $(DEMO_OUT)/samples"
	$(PY) samples/make_samples.py --out "$(DEMO_OUT)/samples"
	echo "==> sarreg info: how both scenes will be read (kind, nodata, valid share, grey range, georeferencing)"
	$(SARREG) info "$(DEMO_OUT)/samples/scene_a.tif" "$(DEMO_OUT)/samples/scene_b.tif"
	echo "==> sarreg extract: keypoints of both scenes, with quicklooks"
	$(SARREG) extract --weights "$(EXTRACT_MODEL)" -o "$(DEMO_OUT)" --geo --no-progress --overwrite \
	  --quicklook "$(DEMO_OUT)/keypoints.png" "$(DEMO_OUT)/samples/scene_a.tif" "$(DEMO_OUT)/samples/scene_b.tif"
	echo "==> sarreg register: scene_b onto scene_a's grid (COG + report, tie points, QGIS .points, quicklook)"
	rc=0; $(SARREG) register --weights "$(MODEL)" --overwrite --geojson \
	  --quicklook "$(DEMO_OUT)/scene_b_coreg.png" \
	  "$(DEMO_OUT)/samples/scene_a.tif" "$(DEMO_OUT)/samples/scene_b.tif" "$(DEMO_OUT)/scene_b_coreg.tif" || rc=$$?
	echo "==> check against the known truth"
	$(PY) samples/check_result.py "$(DEMO_OUT)/samples/truth.json" "$(DEMO_OUT)/scene_b_coreg.report.json" || rc=$$?
	echo
	echo "Demo outputs in $(DEMO_OUT)/:"
	ls -l "$(DEMO_OUT)" "$(DEMO_OUT)/samples"
	echo "Open $(DEMO_OUT)/scene_b_coreg.png for a quick visual check; $(DEMO_OUT)/scene_b_coreg.tiepoints.gpkg in QGIS."
	exit $$rc

qgis-plugin: install
	$(PY) qgis/build_plugin.py --out dist/sarreg_qgis.zip

qgis-screenshot: install
	@command -v qgis_process >/dev/null 2>&1 || { echo "make qgis-screenshot: QGIS is not installed" >&2; exit 1; }
	mkdir -p "$(SHOT_DIR)"
	$(PY) samples/make_samples.py --out "$(SHOT_DIR)/samples" --size 768
	QT_QPA_PLATFORM=offscreen $(QGIS_PYTHON) qgis/make_screenshot.py --sarreg "$(abspath $(SARREG))" \
	  --ref "$(SHOT_DIR)/samples/scene_a.tif" --moving "$(SHOT_DIR)/samples/scene_b.tif" --work "$(SHOT_DIR)/out" \
	  --out docs/qgis_screenshot.png

clean:
	rm -rf "$(DEMO_OUT)" .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf "$(VENV)" *.egg-info build dist
