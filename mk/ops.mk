# Operations on a deployed environment: backup, restore (Docker target; scripts/mlopskit/backup.py
# and restore.py) and upgrade. Backups go to mlops_docker_backup_dir (default
# /var/backups/mlops-kit/<prefix>/), which `make destroy PURGE=1` leaves alone.
FROM ?=
KEEP ?=

.PHONY: backup
backup: $(VENV_STAMP) ## Back up the databases, SFTP data and secrets of $(ENV) (KEEP=N: keep the newest N)
	$(MLOPSKIT) stack backup $(ENV) $(if $(KEEP),--keep $(KEEP))

# The restore leaves MLflow stopped and forgets which image migrated the databases; the deploy
# after it migrates the restored schema if need be and starts MLflow on the restored secrets.
.PHONY: restore
restore: $(VENV_STAMP) ## Restore $(ENV) from FROM=<backup dir> (default: latest; YES=1: no prompt), then deploy
	YES=$(YES) $(MLOPSKIT) stack restore $(ENV) $(FROM)
	$(MAKE) --no-print-directory deploy ENV=$(ENV)

# Image tags come from images/versions.env: after bumping a version, deploy re-creates the
# containers on the new images and the MLflow migration runs once, after the backup.
.PHONY: upgrade
upgrade: $(VENV_STAMP) ## Back up $(ENV) (Docker target), rebuild the images, redeploy (migrations run once)
	$(MLOPSKIT) stack check $(ENV)
	$(MLOPSKIT) stack pre-upgrade $(ENV)
	$(MAKE) --no-print-directory images
	$(MAKE) --no-print-directory deploy ENV=$(ENV)
