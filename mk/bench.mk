# Benchmarks of a deployed environment (bench/run_all.py), not part of `make test`: this stack
# beside a stock `mlflow server` and raw OpenSSH sftp, in one run. deploy/bench/ is the
# environment made for it (`make deploy ENV=bench` first). Writes build/bench-results/<UTC time>.md/.png
# (outside build/<env>/, so purging the environment keeps them).
# README=1 rewrites the generated block of README.md; BENCH_ARGS passes more options
# (--large, --with-cache-off, --with-deploy, --seconds N, --person NAME).
README ?=
BENCH_ARGS ?=

.PHONY: bench
bench: $(VENV_STAMP) ## Benchmark deployed $(ENV) vs stock MLflow/sftp: table + plot in build/bench-results/ (README=1 BENCH_ARGS=…)
	$(MLOPSKIT) stack check $(ENV)
	nice -n 10 $(PY) -m bench.run_all $(ENV) \
		$(if $(filter 1 true yes,$(README)),--update-readme) $(BENCH_ARGS)
