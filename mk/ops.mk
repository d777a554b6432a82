# Operations on a deployed Docker-target environment: backup and restore (scripts/mlopskit/backup.py).
FROM ?=

.PHONY: backup
backup: $(VENV_STAMP) ## Back up both databases and the SFTP data of $(ENV) into build/$(ENV)/backups/
	$(PY) -m mlopskit backup $(ENV)

.PHONY: restore
restore: $(VENV_STAMP) ## Restore $(ENV) from FROM=build/$(ENV)/backups/<time> (default: latest; YES=1: no prompt)
	YES=$(YES) $(PY) -m mlopskit restore $(ENV) $(FROM)
