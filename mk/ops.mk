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
# A new PostgreSQL major (versions.env, POSTGRESQL_MAJOR=N or mlops_docker_postgresql_major):
# pre-upgrade refuses a downgrade before anything changes; upgrade-postgresql stops MLflow,
# backs up, keeps the old volume as <prefix>-pgdata-<old major> and loads the dumps into the
# new major on a fresh volume (scripts/mlopskit/pgmajor.py); the same major: it does nothing.
.PHONY: upgrade
upgrade: $(VENV_STAMP) ## Back up $(ENV) (Docker target), rebuild the images, move to a new PostgreSQL major by dump/restore, redeploy
	$(MLOPSKIT) stack check $(ENV)
	$(MLOPSKIT) stack pre-upgrade $(ENV)
	$(MAKE) --no-print-directory images
	$(MLOPSKIT) stack upgrade-postgresql $(ENV)
	$(MAKE) --no-print-directory deploy ENV=$(ENV)
