#!/bin/bash
# SFTP entrypoint: a non-root sshd that serves SFTP only, to holders of listed keys, each key
# confined to one area (a directory under the data root), read-only or read-write.
# A non-root sshd can only log in the UID it runs as and cannot chroot; the confinement is
# Landlock, applied by the account's login shell sftp-session (sftp-session.c) before it
# execs sftp-server. Without a usable Landlock the image refuses to start.
set -euo pipefail
RUNTIME_DIR=/tmp/sftp
# shellcheck source=../common/lib.sh
source /usr/local/lib/mlops-kit/lib.sh

: "${SFTP_USERNAME:=mlops}" "${SFTP_PORT:=2222}" "${SFTP_DATA_ROOT:=/data}"
: "${SFTP_DIRECTORIES=artifacts dvc}" "${SFTP_ACCESS:=/etc/sftp/access}"
: "${SFTP_HOST_KEYS_DIR:=/etc/sftp/host-keys}" "${SFTP_MAX_SESSIONS:=32}"
: "${SFTP_MAX_STARTUPS:=64:30:256}" "${SFTP_LOG_LEVEL:=INFO}"
SESSION_SHELL=/usr/local/bin/sftp-session

[[ $SFTP_USERNAME =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] ||
  die "SFTP_USERNAME='$SFTP_USERNAME' must match [a-z_][a-z0-9_-]{0,31}"
require_port SFTP_PORT
[[ $SFTP_MAX_SESSIONS =~ ^[1-9][0-9]*$ ]] || die "SFTP_MAX_SESSIONS must be a positive number"
[[ $SFTP_MAX_STARTUPS =~ ^[0-9]+(:[0-9]+:[0-9]+)?$ ]] ||
  die "SFTP_MAX_STARTUPS='$SFTP_MAX_STARTUPS' must look like 64 or 64:30:256"
[[ $SFTP_LOG_LEVEL =~ ^(QUIET|FATAL|ERROR|INFO|VERBOSE|DEBUG[1-3]?)$ ]] ||
  die "SFTP_LOG_LEVEL='$SFTP_LOG_LEVEL' must be one of QUIET FATAL ERROR INFO VERBOSE DEBUG"
[[ $SFTP_DATA_ROOT =~ ^(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+$ ]] ||
  die "SFTP_DATA_ROOT='$SFTP_DATA_ROOT' must be an absolute path of plain names"
[[ -d $SFTP_DATA_ROOT && -w $SFTP_DATA_ROOT ]] ||
  die "$SFTP_DATA_ROOT is not a writable directory for UID $(id -u); mount a volume writable by group 0"
for area in $SFTP_DIRECTORIES; do
  [[ $area =~ ^[a-z][a-z0-9_-]{0,62}$ ]] ||
    die "SFTP_DIRECTORIES: '$area' must match [a-z][a-z0-9_-]* (one plain directory name each)"
done
landlock=$("$SESSION_SHELL" --check 2>&1) ||
  die "cannot isolate SFTP sessions: $landlock. run on a host or node whose kernel enables Landlock (Linux 5.13+, landlock in the lsm= list) with the runtime's default seccomp profile"

runtime_dir
# sshd's StrictModes walks from authorized_keys up to the home directory; a private home
# on the tmpfs passes that check whatever the volume's ownership is.
home="$RUNTIME_DIR/home"
install -d -m 0700 "$home" "$home/.ssh" "$RUNTIME_DIR/host-keys"
nss_identity "$SFTP_USERNAME" "$home" "$SESSION_SHELL"

# The access list: lines "<area> <ro|rw> <public key>", from one file or from every
# non-hidden file of a directory. Each key is forced into its area by sftp-session.
if [[ -d $SFTP_ACCESS ]]; then
  # awk 1 ends every file with a newline, so a file without one (a ConfigMap value) does not
  # glue its last line to the next file's first.
  access=$(find -L "$SFTP_ACCESS" -maxdepth 1 -type f ! -name '.*' -print0 | sort -z |
    xargs -0 -r awk 1)
elif [[ -f $SFTP_ACCESS ]]; then
  access=$(awk 1 "$SFTP_ACCESS")
else
  die "SFTP_ACCESS=$SFTP_ACCESS does not exist; mount the access list (lines '<area> <ro|rw> <public key>') there"
fi
keys="$home/.ssh/authorized_keys"
: >"$keys"
chmod 0600 "$keys"
# sshd uses the first line that matches a key, so every key gets one line listing all of its
# areas: "<dir> <mode> [<dir> <mode> ...]".
declare -A grants=() key_lines=()
order=()
while read -r area mode key; do
  [[ -z $area || $area == \#* ]] && continue
  [[ " $SFTP_DIRECTORIES " == *" $area "* ]] ||
    die "SFTP_ACCESS: area '$area' is not one of SFTP_DIRECTORIES ($SFTP_DIRECTORIES)"
  [[ $mode == ro || $mode == rw ]] || die "SFTP_ACCESS: mode '$mode' for area '$area' must be ro or rw"
  ssh-keygen -l -f <(printf '%s\n' "$key") >/dev/null 2>&1 ||
    die "SFTP_ACCESS: the key for area '$area' is not a public key: ${key:0:40}..."
  read -r key_type key_data _ <<<"$key"
  id="$key_type $key_data"
  if [[ -z ${grants[$id]+set} ]]; then
    order+=("$id")
    key_lines[$id]=$key
    grants[$id]=""
  fi
  [[ " ${grants[$id]} " != *" $SFTP_DATA_ROOT/$area "* ]] ||
    die "SFTP_ACCESS: a key is listed twice for area '$area'; keep one line per key and area"
  grants[$id]+="${grants[$id]:+ }$SFTP_DATA_ROOT/$area $mode"
done <<<"$access"
for id in "${order[@]}"; do
  printf 'restrict,command="%s" %s\n' "${grants[$id]}" "${key_lines[$id]}" >>"$keys"
done
count=${#order[@]}
((count > 0)) || die "SFTP_ACCESS=$SFTP_ACCESS holds no key"

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
DisableForwarding yes
ExposeAuthInfo no
PrintMotd no
MaxSessions $SFTP_MAX_SESSIONS
MaxStartups $SFTP_MAX_STARTUPS
ClientAliveInterval 30
ClientAliveCountMax 4
LogLevel $SFTP_LOG_LEVEL
# Every key carries a forced command (above), which replaces this for sftp sessions.
Subsystem sftp /usr/lib/openssh/sftp-server
CONFIG
/usr/sbin/sshd -t -f "$config" || die "the generated sshd configuration is invalid"

log "serving SFTP for '$SFTP_USERNAME' on port $SFTP_PORT: $count keys, areas $SFTP_DIRECTORIES under $SFTP_DATA_ROOT, sessions confined by $landlock"
exec /usr/sbin/sshd -D -e -f "$config"
