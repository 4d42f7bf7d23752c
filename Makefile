# kd_repro: the README's commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
ONLY ?=
JOBS ?= 1
BIN := $(VENV)/bin
STAMP := $(VENV)/.kd_repro-installed

.PHONY: help data report test gpu-check export clean venv

help:
	@echo "make data       check the profile's data sets, installing what a package registry serves (PROFILE=quick)"
	@echo "make report     run every notebook (PROFILE=quick|smoke|paper, ONLY=hinton,dafl, JOBS=2) into reports/<profile>/"
	@echo "make test       unit tests, every notebook in the smoke profile, export sync"
	@echo "make gpu-check  run the CUDA paths once on a GPU (on a CPU: the same paths there); reports/quick/results/gpu_check_<device>.json"
	@echo "make export     nbdev_export + nbdev_clean (run before every commit)"
	@echo "make clean      remove the smoke reports and python caches"

venv: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing kd_repro and its dev dependencies into $(VENV) (log: $(VENV)/pip-install.log)"
	@$(BIN)/python -m pip install -e '.[dev]' > $(VENV)/pip-install.log 2>&1 \
		|| { grep -v 'is ignored: it is neither' $(VENV)/pip-install.log | tail -40; exit 1; }
	@touch $@

data: $(STAMP)
	$(BIN)/kd_repro data --profile $(PROFILE)

report: data
	$(BIN)/kd_repro reproduce --profile $(PROFILE) --jobs $(JOBS) $(if $(ONLY),--only $(ONLY))

test: $(STAMP)
	$(BIN)/kd_repro data --profile smoke
	$(BIN)/python -m pytest

gpu-check: $(STAMP)
	$(BIN)/kd_repro gpu-check

export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

clean:
	rm -rf reports/smoke .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
