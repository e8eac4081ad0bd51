# The two commands. Both install whatever is missing first (scripts/bootstrap.sh)
# and are quick when everything is already there.
.PHONY: run test bootstrap fmt bench-api

## Build and serve the app on http://127.0.0.1:3000 (embedded PostgreSQL in ./data).
run:
	@scripts/run.sh

## Every test: fmt, clippy, unit, integration (real PostgreSQL), end-to-end (Chromium).
test:
	@scripts/test.sh

## Only install missing tools.
bootstrap:
	@scripts/bootstrap.sh

fmt:
	cargo fmt --all
