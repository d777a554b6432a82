#!/bin/bash
# SFTP entrypoint: a non-root sshd that only speaks internal-sftp to holders of authorized keys.
# A non-root sshd can only log in the UID it runs as, and cannot chroot: isolation comes from
# ForceCommand internal-sftp, no forwarding, no TTY and file permissions.
set -euo pipefail
RUNTIME_DIR=/tmp/sftp
# shellcheck source=../common/lib.sh
source /usr/local/lib/mlops-kit/lib.sh

: "${SFTP_USERNAME:=mlops}" "${SFTP_PORT:=2222}" "${SFTP_DATA_ROOT:=/data}"
: "${SFTP_DIRECTORIES=artifacts dvc}" "${SFTP_AUTHORIZED_KEYS:=/etc/sftp/authorized_keys}"
: "${SFTP_HOST_KEYS_DIR:=/etc/sftp/host-keys}" "${SFTP_MAX_SESSIONS:=32}"
: "${SFTP_MAX_STARTUPS:=64:30:256}" "${SFTP_LOG_LEVEL:=INFO}"

[[ $SFTP_USERNAME =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] ||
  die "SFTP_USERNAME='$SFTP_USERNAME' must match [a-z_][a-z0-9_-]{0,31}"
require_port SFTP_PORT
[[ $SFTP_MAX_SESSIONS =~ ^[1-9][0-9]*$ ]] || die "SFTP_MAX_SESSIONS must be a positive number"
[[ $SFTP_MAX_STARTUPS =~ ^[0-9]+(:[0-9]+:[0-9]+)?$ ]] ||
  die "SFTP_MAX_STARTUPS='$SFTP_MAX_STARTUPS' must look like 64 or 64:30:256"
[[ $SFTP_LOG_LEVEL =~ ^(QUIET|FATAL|ERROR|INFO|VERBOSE|DEBUG[1-3]?)$ ]] ||
  die "SFTP_LOG_LEVEL='$SFTP_LOG_LEVEL' must be one of QUIET FATAL ERROR INFO VERBOSE DEBUG"
[[ $SFTP_DATA_ROOT == /* ]] || die "SFTP_DATA_ROOT='$SFTP_DATA_ROOT' must be an absolute path"
[[ -d $SFTP_DATA_ROOT && -w $SFTP_DATA_ROOT ]] ||
  die "$SFTP_DATA_ROOT is not a writable directory for UID $(id -u); mount a volume writable by group 0"

runtime_dir
# sshd's StrictModes walks from authorized_keys up to the home directory; a private home
# on the tmpfs passes that check whatever the volume's ownership is.
home="$RUNTIME_DIR/home"
install -d -m 0700 "$home" "$home/.ssh" "$RUNTIME_DIR/host-keys"
nss_identity "$SFTP_USERNAME" "$home" /usr/sbin/nologin

# Authorized keys: one file, or every non-hidden file of a directory (one per person).
keys="$home/.ssh/authorized_keys"
if [[ -d $SFTP_AUTHORIZED_KEYS ]]; then
  # awk 1 ends every file with a newline, so a key file without one (a ConfigMap value)
  # does not glue its last key to the next file's first.
  find -L "$SFTP_AUTHORIZED_KEYS" -maxdepth 1 -type f ! -name '.*' -print0 | sort -z |
    xargs -0 -r awk 1 >"$keys"
elif [[ -f $SFTP_AUTHORIZED_KEYS ]]; then
  awk 1 "$SFTP_AUTHORIZED_KEYS" >"$keys"
else
  die "SFTP_AUTHORIZED_KEYS=$SFTP_AUTHORIZED_KEYS does not exist; mount a public-key file or directory there"
fi
chmod 0600 "$keys"
count=0
while IFS= read -r line; do
  [[ -z ${line// /} || $line == \#* ]] && continue
  ssh-keygen -l -f <(printf '%s\n' "$line") >/dev/null 2>&1 ||
    die "SFTP_AUTHORIZED_KEYS=$SFTP_AUTHORIZED_KEYS holds a line that is not a public key: ${line:0:40}..."
  count=$((count + 1))
done <"$keys"
((count > 0)) || die "SFTP_AUTHORIZED_KEYS=$SFTP_AUTHORIZED_KEYS holds no public key"

# Host keys: from the mounted secret, else generated once onto the data volume so the
# fingerprint survives restarts. sshd refuses keys others can read, so use private copies.
shopt -s nullglob
mounted=("$SFTP_HOST_KEYS_DIR"/ssh_host_*_key)
if ((${#mounted[@]} == 0)); then
  generated="$SFTP_DATA_ROOT/.host-keys"
  install -d -m 0700 "$generated"
  for type in ed25519 rsa; do
    if [[ ! -s $generated/ssh_host_${type}_key ]]; then
      log "generating the $type host key in $generated"
      ssh-keygen -q -t "$type" -N '' -C "sftp-host" -f "$generated/ssh_host_${type}_key"
    fi
  done
  mounted=("$generated"/ssh_host_*_key)
fi
host_key_lines=()
for key in "${mounted[@]}"; do
  copy="$RUNTIME_DIR/host-keys/${key##*/}"
  install -m 0600 "$key" "$copy"
  host_key_lines+=("HostKey $copy")
done

umask 0002
for dir in $SFTP_DIRECTORIES; do
  mkdir -p "$SFTP_DATA_ROOT/$dir"
done

config="$RUNTIME_DIR/sshd_config"
cat >"$config" <<CONFIG
Port $SFTP_PORT
$(printf '%s\n' "${host_key_lines[@]}")
PidFile $RUNTIME_DIR/sshd.pid
AuthorizedKeysFile $keys
AllowUsers $SFTP_USERNAME
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitRootLogin no
PermitEmptyPasswords no
UsePAM no
StrictModes yes
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
GatewayPorts no
X11Forwarding no
PermitTunnel no
PermitTTY no
PermitUserRC no
PermitUserEnvironment no
PrintMotd no
MaxSessions $SFTP_MAX_SESSIONS
MaxStartups $SFTP_MAX_STARTUPS
ClientAliveInterval 30
ClientAliveCountMax 4
LogLevel $SFTP_LOG_LEVEL
Subsystem sftp internal-sftp -d $SFTP_DATA_ROOT -u 0002
ForceCommand internal-sftp -d $SFTP_DATA_ROOT -u 0002
CONFIG
/usr/sbin/sshd -t -f "$config" || die "the generated sshd configuration is invalid"

log "serving SFTP for '$SFTP_USERNAME' on port $SFTP_PORT from $SFTP_DATA_ROOT ($count authorized keys)"
exec /usr/sbin/sshd -D -e -f "$config"
