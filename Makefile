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
	cargo clippy --lib --tests --features llm -- -D warnings

test: setup lint
	cargo test --workspace --all-targets --no-fail-fast
	# The dialog's unit tests again with the understanding model (candle) on the real weights:
	# its own tests, and every golden conversation and adversarial script through it. (Not the
	# gibberish test: the model labels "asdf qwerty" as a request; see src/dialog/llm.rs.)
	cargo test --lib --features llm -- dialog::llm dialog::engine::tests::golden dialog::engine::tests::adversarial dialog::engine::tests::failed_attempts dialog::engine::tests::identity_switch

bench: setup
	cargo bench --features llm
