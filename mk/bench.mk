# Benchmarks of a deployed environment (bench/run_all.py), not part of `make test`: this stack
# beside a stock `mlflow server` and raw OpenSSH sftp, in one run, every area by default
# (tracking with the auth cache on and off, artifacts of 256 and 1,024 MiB, DVC, deploy, memory,
# and the tracking figures on the throwaway cluster with 1 and 2 MLflow replicas). deploy/bench/
# is the environment made for it (`make deploy ENV=bench` first). Writes
# build/bench-results/<UTC time>.md/.png (outside build/<env>/, so purging the environment keeps
# them). README=1 rewrites the generated block of README.md; BENCH_ARGS passes more options
# (--skip AREA,…, --seconds N, --clients 1,4,16, --sizes 256,1024, --person NAME).
README ?=
BENCH_ARGS ?=

.PHONY: bench
bench: $(VENV_STAMP) ## Benchmark deployed $(ENV) vs stock MLflow/sftp, goals met or short: table + plot in build/bench-results/ (README=1 BENCH_ARGS=…)
	$(MLOPSKIT) stack check $(ENV)
	$(MLOPSKIT) host helm >/dev/null  # the Kubernetes area deploys the chart
	nice -n 10 $(PY) -m bench.run_all $(ENV) \
		$(if $(filter 1 true yes,$(README)),--update-readme) $(BENCH_ARGS)
