# edgebci: the two commands on a fresh machine are `make demo` and `make test`; both set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
# pytest arguments; `make test PYTEST_ARGS="-m 'not device'"` runs the host tier only
PYTEST_ARGS ?=

.PHONY: setup system-deps python-deps demo test bench clean
setup: system-deps python-deps

# Cross compiler, newlib and QEMU's Arm boards, from Debian. Installed when missing (needs root or sudo).
system-deps:
	@missing=""; \
	command -v arm-none-eabi-gcc >/dev/null || missing="$$missing gcc-arm-none-eabi libnewlib-arm-none-eabi"; \
	[ -n "$$(ls /usr/lib/arm-none-eabi/newlib 2>/dev/null)" ] || missing="$$missing libnewlib-arm-none-eabi"; \
	command -v qemu-system-arm >/dev/null || missing="$$missing qemu-system-arm"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else \
	    echo "edgebci needs the Debian packages:$$missing"; \
	    echo "install them as root: apt-get install -y$$missing"; exit 1; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

python-deps: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@[ -x $(VENV)/bin/pip ] || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "could not create $(VENV): install python3-venv (apt-get install python3-venv)"; exit 1; }; }
	$(PY) -m pip install -q -e '.[all]'
	@touch $@

demo: setup
	$(VENV)/bin/edgebci demo --out build/demo

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: counted as a failure"; exit 1; fi; exit $$rc

bench: setup
	$(PY) -m pytest bench --benchmark-enable -p no:cacheprovider

clean:
	rm -rf build
