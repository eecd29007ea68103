# The two commands: `make run` and `make test` (see README.md). Both run scripts/setup first,
# which is quick when everything is already installed.
CAREVOICE_CACHE ?= $(HOME)/.cache/carevoice
export CAREVOICE_CACHE
# Cargo's build output stays outside the clone so a fresh clone rebuilds incrementally.
CARGO_TARGET_DIR ?= $(CAREVOICE_CACHE)/target
export CARGO_TARGET_DIR

.PHONY: setup build run test lint bench
setup:
	scripts/setup

build: setup
	cargo build --release --bin carevoice

# Starts the server on the embedded default (SQLite in ./data, models from the cache, a local
# FHIR test server seeded with the demo clinic).
run: build
	scripts/run-local $(CARGO_TARGET_DIR)/release/carevoice

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --lib --features llm -- -D warnings

test: setup lint
	cargo test --workspace --all-targets --no-fail-fast
	# the understanding model (candle) on the real weights; opt-in in the build, see Cargo.toml
	cargo test --lib --features llm dialog::llm

bench: setup
	cargo bench --features llm
