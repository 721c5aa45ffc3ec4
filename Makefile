# pciem-gateway: the two commands a user types are `make demo` and
# `make test`; everything they need is installed and built on the way.
# `make help` lists the targets.

SHELL := /bin/bash
NODE_BIN := node_modules/.bin
SHELL_SCRIPTS := scripts/*.sh guests/vm/run guests/vm/mkinitramfs qemu-plugin/build.sh qemu-plugin/tests/*.sh .ci/run guests/doom/run-doom

ADDON := gateway/native/build/Release/pciem_native.node

.PHONY: help deps lint typecheck unit kernel qemu addon proto test test-qemu test-vm demo bench doom clean

help:
	@echo "make demo       DOOM through the card in the host VM: VNC on 127.0.0.1:5900,"
	@echo "                screendumps in demo-out/ (DEMO_OUT, DEMO_VNC_PORT, DEMO_SECONDS)"
	@echo "make test       the whole suite: deps, lint, typecheck, unit, kernel builds,"
	@echo "                QEMU build, QEMU tests, VM tests; times each stage"
	@echo "make deps       install Debian + npm packages and fetch Debian's kernels"
	@echo "make lint       eslint, shellcheck, checkpatch (kernel/, qemu-plugin/), generated files current"
	@echo "make typecheck  tsc --noEmit"
	@echo "make unit       unit tests (no VM, no QEMU)"
	@echo "make kernel     build kernel/ against Debian 6.12 and 6.1 with -Werror"
	@echo "make addon      build the gateway's native addon (node-gyp)"
	@echo "make proto      regenerate proto/generated/ and docs tables from proto/*.json"
	@echo "make qemu       build QEMU with our devices; prints the binary's path"
	@echo "make doom       build the DOOM frame hook (guests/doom/build/libdoomhook.so)"
	@echo "make test-qemu  tests against the built QEMU"
	@echo "make test-vm    tests inside the Debian 6.12/6.1 VM"
	@echo "make bench      the performance targets, each against its baseline in the"
	@echo "                same run (doorbell -> MSI, posted-write relay, bulk DMA)"
	@echo "make clean      remove build output in the checkout (the cache stays)"

deps:
	@scripts/deps.sh

lint: deps
	@$(NODE_BIN)/eslint .
	@shellcheck -x $(wildcard $(SHELL_SCRIPTS)) guests/vm/init
	@scripts/checkpatch.sh
	@$(NODE_BIN)/tsx proto/gen/protopciem.ts --check
	@$(NODE_BIN)/tsx proto/gen/wire.ts --check

typecheck: deps
	@$(NODE_BIN)/tsc -p tsconfig.json --noEmit

unit: deps addon
	@scripts/test.sh unit

proto: deps
	@$(NODE_BIN)/tsx proto/gen/protopciem.ts
	@$(NODE_BIN)/tsx proto/gen/wire.ts

addon: deps $(ADDON)

# Debian's Node headers are in /usr/include/node; nothing is downloaded.
$(ADDON): gateway/native/pciem_native.cc gateway/native/binding.gyp
	@$(NODE_BIN)/node-gyp rebuild --nodedir=/usr -C gateway/native --loglevel=warn

kernel: deps
	@$(MAKE) --no-print-directory -C kernel

qemu: deps
	@qemu-plugin/build.sh

doom: deps
	@$(MAKE) --no-print-directory -C guests/doom

test-qemu: qemu
	@scripts/test.sh qemu-tests

test-vm: kernel
	@scripts/test.sh vm

test:
	@scripts/test.sh

demo:
	@scripts/demo.sh

bench: kernel qemu addon
	@$(NODE_BIN)/tsx test/bench/run.ts

clean:
	@$(MAKE) --no-print-directory -C kernel clean
	@rm -rf dist gateway/native/build
