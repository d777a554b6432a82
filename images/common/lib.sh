# shellcheck shell=bash
# Shared helpers for the entrypoints of the postgresql and sftp images (sourced, not run).
# Contract: see images/README.md. Errors are one line on stderr and exit code 78 (EX_CONFIG).

readonly EX_CONFIG=78

die() {
  echo "error: $*" >&2
  exit "$EX_CONFIG"
}

# check_pattern NAME PATTERN: refuse the value of variable NAME unless it matches the extended
# regular expression PATTERN (images/contract.yaml `pattern`; the checks are generated).
check_pattern() {
  local name=$1 pattern=$2
  [[ ${!name} =~ $pattern ]] || die "$name='${!name}' must match $pattern (images/README.md)"
}

log() {
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) ${0##*/}: $*" >&2
}

# file_env VAR [DEFAULT]: set VAR from $VAR or from the file named by $VAR_FILE (not both),
# then drop VAR_FILE from the environment. Trailing newlines of the file are stripped.
file_env() {
  local var=$1 default=${2-}
  local file_var="${var}_FILE"
  local value=${!var-} file=${!file_var-}
  if [[ -n $value && -n $file ]]; then
    die "both $var and $file_var are set; set only one"
  fi
  if [[ -n $file ]]; then
    [[ -f $file && -r $file ]] || die "$file_var=$file is not a readable file; mount the secret there"
    value=$(<"$file")
  fi
  printf -v "$var" '%s' "${value:-$default}"
  unset "$file_var"
}

# require VAR HINT: fail unless VAR is non-empty.
require() {
  [[ -n ${!1-} ]] || die "$1 is required (or ${1}_FILE naming a file that holds it): $2"
}

# require_identifier VAR: fail unless VAR is a plain lower-case identifier.
require_identifier() {
  [[ ${!1-} =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "$1='${!1-}' must match [a-z_][a-z0-9_]*"
}

# require_port VAR
require_port() {
  if ! [[ ${!1-} =~ ^[0-9]+$ ]] || ((${!1} < 1024 || ${!1} > 65535)); then
    die "$1='${!1-}' must be a port number from 1024 to 65535 (the container runs unprivileged)"
  fi
}

# nss_identity NAME HOME SHELL: give the running UID (arbitrary, group 0) a passwd entry, as
# OpenShift's restricted-v2 assigns UIDs that /etc/passwd cannot know. Files go to $RUNTIME_DIR.
nss_identity() {
  local name=$1 home=$2 shell=$3 dir="$RUNTIME_DIR/nss"
  mkdir -p "$dir"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n%s:x:%s:0:%s:%s:%s\n' \
    "$name" "$(id -u)" "$name" "$home" "$shell" >"$dir/passwd"
  printf 'root:x:0:\n' >"$dir/group"
  export NSS_WRAPPER_PASSWD="$dir/passwd" NSS_WRAPPER_GROUP="$dir/group"
  export LD_PRELOAD=libnss_wrapper.so
}

# runtime_dir: create the private scratch directory; /tmp must be a writable mount.
runtime_dir() {
  [[ -w /tmp ]] || die "/tmp is not writable; mount a tmpfs there (docker: --tmpfs /tmp)"
  install -d -m 0700 "$RUNTIME_DIR"
}
