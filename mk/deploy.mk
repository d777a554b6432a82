# Docker target: deploy, smoke, info, destroy, and the end-to-end run `make test` ends with.
# Every environment is deploy/$(ENV)/ (inventory.yml + settings.yml); what a deploy generates
# (secrets, connection.env) lands in build/$(ENV)/.
DEPLOY_DIR = deploy/$(ENV)
ANSIBLE_PLAYBOOK = ANSIBLE_CONFIG=$(CURDIR)/ansible/ansible.cfg $(BIN)/ansible-playbook \
	-i $(DEPLOY_DIR)/inventory.yml -e @$(DEPLOY_DIR)/settings.yml -e mlops_env=$(ENV)
PURGE ?=
YES ?=

.PHONY: deploy
deploy: $(VENV_STAMP) ## Deploy the stack of deploy/$(ENV) (ENV=local by default) and print how to connect
	$(MLOPSKIT) stack check $(ENV)
	$(ANSIBLE_PLAYBOOK) ansible/deploy.yml
	@$(MLOPSKIT) stack info $(ENV)

.PHONY: info
info: $(VENV_STAMP) ## Print the connection settings of $(ENV), secrets masked
	@$(MLOPSKIT) stack info $(ENV)

.PHONY: smoke
smoke: $(VENV_STAMP) ## End-to-end checks of a deployed $(ENV) with the stock mlflow and dvc clients
	$(MLOPSKIT) stack check $(ENV)
	$(MLOPSKIT) host chromium >/dev/null
	MLOPS_ENV=$(ENV) $(BIN)/pytest tests/smoke

.PHONY: destroy
destroy: $(VENV_STAMP) ## Remove containers + network of $(ENV); PURGE=1 also volumes and secrets (YES=1: no prompt)
	$(MLOPSKIT) stack check $(ENV)
	$(if $(filter 1 true yes,$(PURGE)),YES=$(YES) $(MLOPSKIT) stack confirm-purge $(ENV))
	$(ANSIBLE_PLAYBOOK) ansible/destroy.yml -e mlops_purge=$(if $(filter 1 true yes,$(PURGE)),true,false)

.PHONY: test-e2e
test-e2e: $(VENV_STAMP) ## Deploy the isolated e2e env, smoke, idempotency, restart, destroy
	$(MLOPSKIT) host chromium >/dev/null
	$(BIN)/pytest -x tests/e2e

# People (deploy/$(ENV)/people.yml): each command edits the list, then converges like `make deploy`.
NAME ?=
ROLE ?= editor
DVC ?= write
PUBKEY ?=

.PHONY: add-user
add-user: $(VENV_STAMP) ## Give NAME their own MLflow account and SFTP key in $(ENV) (ROLE=reader|editor|admin DVC=read|write|none PUBKEY=file.pub)
	$(MLOPSKIT) people add $(ENV) "$(NAME)" --role "$(ROLE)" --dvc "$(DVC)" --pubkey "$(PUBKEY)"
	$(MAKE) --no-print-directory deploy ENV=$(ENV)

.PHONY: remove-user
remove-user: $(VENV_STAMP) ## Revoke NAME's MLflow login and SFTP key in $(ENV) (their runs and data stay)
	$(MLOPSKIT) people remove $(ENV) "$(NAME)"
	$(MAKE) --no-print-directory deploy ENV=$(ENV)

.PHONY: rotate-user
rotate-user: $(VENV_STAMP) ## New password and key pair for NAME in $(ENV) (PUBKEY=file.pub: their new public key)
	$(MLOPSKIT) people rotate $(ENV) "$(NAME)" --pubkey "$(PUBKEY)"
	$(MAKE) --no-print-directory deploy ENV=$(ENV)
