# Two entry points for a fresh machine; each installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# cryoCARE 0.3.0, the reference implementation, in an environment of its own: the test
# suite checks that it loads and predicts with model archives written by cryocare.
REF    := .venv-cryocare-ref
REF_STAMP := $(REF)/.installed

.PHONY: demo test install clean qt-libs

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,torch,jax,fast,napari]"
	touch $(STAMP)

$(REF_STAMP): benchmarks/setup_reference.sh | $(STAMP)
	bash benchmarks/setup_reference.sh $(REF)
	touch $(REF_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cryocare demo --output demo_output --overwrite

# All tests on TensorFlow, then the tests marked `backend` again on PyTorch (training, networks,
# backends, the exported runtime graph, the streamed U-Net) and on JAX (networks, backends, the
# streamed U-Net: JAX compiles every new model, which makes the training/resume tests slow there).
test: $(STAMP) $(REF_STAMP) qt-libs
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q -p no:cacheprovider -m backend \
	    tests/test_training.py tests/test_nets.py tests/test_backends.py tests/test_diffusion.py \
	    tests/test_runtime.py tests/test_streaming.py tests/test_wedge_training.py \
	    tests/test_isotropic.py
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -p no:cacheprovider -m backend \
	    tests/test_nets.py tests/test_backends.py tests/test_streaming.py tests/test_wedge_training.py \
	    tests/test_isotropic.py

# The napari plugin's tests (tests/test_napari.py): Qt on its offscreen platform needs these
# system libraries, and napari's OpenGL canvas a virtual X display with Mesa. Installed with
# apt-get (as root, as CI runs) only when one is missing.
QT_DEBS := libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libxkbcommon0 libfontconfig1 \
	libfreetype6 libdbus-1-3 libglib2.0-0 libx11-6 xvfb xauth
qt-libs:
	@if command -v dpkg >/dev/null && ! dpkg -s $(QT_DEBS) >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        apt-get update -qq && apt-get install -y -qq --no-install-recommends $(QT_DEBS); \
	    else echo "tests/test_napari.py needs: sudo apt-get install $(QT_DEBS)"; fi; fi

clean:
	rm -rf $(VENV) $(REF) demo_output
