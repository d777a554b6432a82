#!/bin/bash
# Derives OpenSSH public keys from mounted private keys, in an init container of the SFTP image
# (it has ssh-keygen and nss_wrapper). Helm can generate private keys but cannot print their
# OpenSSH public halves, so the pods derive them at start:
#   known-hosts KEY_DIR OUT HOSTS PORT
#       known_hosts lines "[host]:port key" for every ssh_host_*_key in KEY_DIR (HOSTS is a
#       comma-separated list of the names the server is reached by).
#   access CLIENT_KEY TEST_KEYS_DIR PEOPLE_DIR OUT_DIR
#       the SFTP image's access list (SFTP_ACCESS, lines "<area> <ro|rw> <key>") as files of
#       OUT_DIR: mlflow (MLflow's key, artifacts rw), helm-test (the helm test keys
#       dvc-rw and dvc-ro of TEST_KEYS_DIR, when present) and a copy of each PEOPLE_DIR file.
set -euo pipefail
RUNTIME_DIR=/tmp/public-keys
# shellcheck source=/dev/null
source /usr/local/lib/mlops-kit/lib.sh
runtime_dir
# ssh-keygen needs a passwd entry for the arbitrary UID.
nss_identity keys "$RUNTIME_DIR" /usr/sbin/nologin

# public_key FILE: the OpenSSH public key of a private key file (copied: ssh-keygen refuses
# private keys that others can read).
public_key() {
  local copy="$RUNTIME_DIR/key"
  install -m 0600 "$1" "$copy"
  ssh-keygen -y -f "$copy" || die "$1 is not a private key ssh-keygen can read"
  rm -f "$copy"
}

case "${1-}" in
  known-hosts)
    (($# == 5)) || die "usage: known-hosts KEY_DIR OUT HOSTS PORT"
    key_dir=$2 out=$3 hosts=$4 port=$5
    patterns=""
    IFS=, read -r -a names <<<"$hosts"
    for name in "${names[@]}"; do
      patterns+="${patterns:+,}[$name]:$port"
    done
    shopt -s nullglob
    keys=("$key_dir"/ssh_host_*_key)
    ((${#keys[@]} > 0)) || die "no ssh_host_*_key in $key_dir; check the SFTP host-keys Secret"
    : >"$out.partial"
    for key in "${keys[@]}"; do
      # An assignment, so that set -e stops on a key ssh-keygen cannot read.
      public=$(public_key "$key")
      printf '%s %s\n' "$patterns" "$public" >>"$out.partial"
    done
    mv "$out.partial" "$out"
    log "wrote ${#keys[@]} host keys for $hosts port $port to $out"
    ;;
  access)
    (($# == 5)) || die "usage: access CLIENT_KEY TEST_KEYS_DIR PEOPLE_DIR OUT_DIR"
    client_key=$2 test_keys=$3 people=$4 out_dir=$5
    public=$(public_key "$client_key")
    printf 'artifacts rw %s mlflow-server\n' "$public" >"$out_dir/mlflow"
    if [[ -f $test_keys/dvc-rw && -f $test_keys/dvc-ro ]]; then
      writer=$(public_key "$test_keys/dvc-rw")
      reader=$(public_key "$test_keys/dvc-ro")
      printf 'dvc rw %s helm-test-dvc-rw\ndvc ro %s helm-test-dvc-ro\n' "$writer" "$reader" \
        >"$out_dir/helm-test"
    fi
    count=0
    if [[ -d $people ]]; then
      while IFS= read -r -d '' file; do
        # A ConfigMap value has no trailing newline; end each copy with one.
        {
          cat "$file"
          [[ -z $(tail -c 1 "$file") ]] || echo
        } >"$out_dir/${file##*/}"
        count=$((count + 1))
      done < <(find -L "$people" -maxdepth 1 -type f ! -name '.*' -print0)
    fi
    log "wrote the access list to $out_dir: MLflow's key, $count people$([[ -e $out_dir/helm-test ]] && echo ", the helm test keys")"
    ;;
  *)
    die "unknown command '${1-}'; use known-hosts or access"
    ;;
esac
