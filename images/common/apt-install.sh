#!/bin/sh
# apt-install PACKAGE...: install Debian packages into an image layer and leave no caches,
# documentation or translations behind (what debian:*-slim does, for any base image).
set -eu
cat >/etc/dpkg/dpkg.cfg.d/mlops-kit-slim <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CONF
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
