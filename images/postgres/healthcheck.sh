#!/bin/bash
# Healthy once the real server (not the bootstrap one) accepts connections.
exec pg_isready -q -h /tmp/postgres/socket -p "${POSTGRES_PORT:-5432}" -U postgres
