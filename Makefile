# The two commands the README starts with:
#   make demo   set up, build, quantize the bundled prose-tiny model to Q4_K_M, inspect it, plan it
#   make test   set up, build, run every test (unit + interop against the real llama.cpp)
# Shipping:
#   make install [PREFIX=/usr/local]   binary, man page, bash completion (cmake --install)
#   make deb                           build/qforge_<version>_<arch>.deb (CPack)
BUILD ?= build
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local

.PHONY: all setup build demo test install deb asan fuzz bench clean

all: build

setup:
	@scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@mkdir -p $(BUILD)/demo
	$(BUILD)/qforge convert models/prose-tiny -o $(BUILD)/demo/prose-tiny-f16.gguf --force
	$(BUILD)/qforge quantize models/prose-tiny $(BUILD)/demo/prose-tiny-Q4_K_M.gguf Q4_K_M --force
	$(BUILD)/qforge inspect $(BUILD)/demo/prose-tiny-Q4_K_M.gguf
	$(BUILD)/qforge plan $(BUILD)/demo/prose-tiny-f16.gguf --gpu 3060 -c 1024

test: build
	cd $(BUILD) && QFORGE_TEST_THREADS=$${QFORGE_TEST_THREADS:-$(JOBS)} ctest --output-on-failure
	@scripts/run-fuzzers.sh $(FUZZ_SECONDS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

deb: build
	cd $(BUILD) && cpack -G DEB
	@ls -l $(BUILD)/qforge_*.deb

# Debug build with AddressSanitizer + UndefinedBehaviorSanitizer, unit tests only.
asan: setup
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQFORGE_SANITIZE=ON -DQFORGE_BENCH=OFF >/dev/null
	@cmake --build build-asan -j $(JOBS) --target qforge_tests qforge
	build-asan/tests/qforge_tests --gtest_brief=1

fuzz: setup
	@scripts/run-fuzzers.sh $(FUZZ_SECONDS)

bench: build
	@echo "see bench/README.md"

clean:
	rm -rf $(BUILD) build-asan build-fuzz
