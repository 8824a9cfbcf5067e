# edgebci: the two commands on a fresh machine are `make demo` and `make test`; both set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-aarch64-linux-gnu qemu-user
# pytest arguments; `make test PYTEST_ARGS="-m 'not device'"` runs the host tier only
PYTEST_ARGS ?=

.PHONY: setup system-deps python-deps demo test bench bench-boards bench-integer clean
setup: system-deps python-deps

# Cross compilers, newlib, QEMU's Arm boards and QEMU user mode (the Jetson's aarch64 build runs under
# qemu-aarch64 in the tests), from Debian. Installed when missing (needs root or sudo).
system-deps:
	@missing=""; \
	command -v arm-none-eabi-gcc >/dev/null || missing="$$missing gcc-arm-none-eabi libnewlib-arm-none-eabi"; \
	[ -n "$$(ls /usr/lib/arm-none-eabi/newlib 2>/dev/null)" ] || missing="$$missing libnewlib-arm-none-eabi"; \
	command -v qemu-system-arm >/dev/null || missing="$$missing qemu-system-arm"; \
	command -v aarch64-linux-gnu-gcc >/dev/null || missing="$$missing gcc-aarch64-linux-gnu"; \
	command -v qemu-aarch64 >/dev/null || missing="$$missing qemu-user"; \
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

# Host latency of every zoo decoder: edgebci x86-64 vs portable C vs onnxruntime vs torch, one thread.
# Under `nice`: the machine is shared. Ratios print at the end and land in build/bench/decoder_host.json.
bench: setup
	nice -n 10 $(PY) -m pytest bench/test_bench_decoder.py --benchmark-enable -p no:cacheprovider -s

# qemu_insn_count, flash and RAM of every zoo decoder on mps2-an386 / mps2-an500 / mps3-an547
# (compile + hil each, about 15 minutes); the table prints at the end, rows in build/bench/boards.json.
bench-boards: setup
	nice -n 10 $(PY) -m pytest bench/test_bench_boards.py -p no:cacheprovider -s

# Float vs integer-only (int8, int8-pow2, w4a8) decoders on mps2-an386 (M4F) and mps2-an385 (M3):
# qemu_insn_count, flash, RAM per family with a bundled quantised checkpoint; rows in build/bench/integer.json.
bench-integer: setup
	nice -n 10 $(PY) -m pytest bench/test_bench_integer.py -p no:cacheprovider -s

clean:
	rm -rf build
