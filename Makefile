.PHONY: check test serve bench
check:
	./scripts/check
serve:
	./scripts/serve
bench:
	.venv/bin/python -m bench.rest
