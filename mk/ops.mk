# Operations on a deployed environment: backup, restore (Docker target; scripts/mlopskit/backup.py)
# and upgrade.
FROM ?=

.PHONY: backup
backup: $(VENV_STAMP) ## Back up both databases and the SFTP data of $(ENV) into build/$(ENV)/backups/
	$(PY) -m mlopskit backup $(ENV)

.PHONY: restore
restore: $(VENV_STAMP) ## Restore $(ENV) from FROM=build/$(ENV)/backups/<time> (default: latest; YES=1: no prompt)
	YES=$(YES) $(PY) -m mlopskit restore $(ENV) $(FROM)

# Image tags come from images/versions.env: after bumping a version, deploy re-creates the
# containers on the new images and the MLflow migration runs once, after the backup.
.PHONY: upgrade
upgrade: $(VENV_STAMP) ## Back up $(ENV) (Docker target), rebuild the images, redeploy (migrations run once)
	$(PY) -m mlopskit env-check $(ENV)
	$(PY) -m mlopskit pre-upgrade $(ENV)
	$(MAKE) --no-print-directory images
	$(MAKE) --no-print-directory deploy ENV=$(ENV)
