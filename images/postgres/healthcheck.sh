#!/bin/bash
# Healthy once the real server (not the bootstrap one) accepts connections.
exec pg_isready -q -p "${POSTGRES_PORT:-5432}" -U postgres  # socket: $PGHOST (Dockerfile)
