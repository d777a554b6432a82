#!/bin/sh
# Start a single-node Ceph with the RADOS Gateway (S3 on port 7480) under /data, as any UID.
# The first start creates the cluster and the S3 user whose keys are in
# /run/secrets/s3/{access_key,secret_key}; later starts reuse both.
# `s3store user NAME ACCESS` (docker exec -i, the secret key on stdin) adds an S3 user.
set -eu
DATA=/data
CONF=$DATA/ceph.conf
export CEPH_CONF=$CONF

if [ "${1:-}" = user ]; then
    radosgw-admin user create --uid="$2" --display-name="$2" --access-key="$3" \
        --secret-key="$(cat)" >/dev/null
    exit 0
fi

mkdir -p "$DATA/run" "$DATA/log"
# The daemons log to files only; a failed start shows their last lines.
# shellcheck disable=SC2329 # invoked by the trap below
show_logs_on_failure() {
    code=$?
    [ "$code" -eq 0 ] || tail -n 15 "$DATA"/log/*.log >&2
}
trap show_logs_on_failure EXIT
if [ ! -f "$CONF" ]; then
    fsid=$(cat /proc/sys/kernel/random/uuid)
    # cephx is off: the daemons talk over loopback only; S3 has its own keys.
    cat >"$CONF.new" <<CONF
[global]
fsid = $fsid
mon_host = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $DATA/run
admin_socket = $DATA/run/\$cluster-\$name.asok
log_file = $DATA/log/\$name.log
log_to_stderr = false
err_to_stderr = false
mon_data = $DATA/mon
osd_data = $DATA/osd
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = 10737418240
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_crush_chooseleaf_type = 0
# Placed once below: at start the OSD would send the monitor these updates itself, and with
# cephx off it may send them before it knows the cluster's fsid, which the monitor refuses
# ('wrong fsid'), and the OSD exits (seen on a loaded machine).
osd_crush_update_on_start = false
osd_class_update_on_start = false
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
auth_allow_insecure_global_id_reclaim = false
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
rgw_frontends = beast port=7480
rgw_data = $DATA/rgw
CONF
    mv "$CONF.new" "$CONF"
    monmaptool --create --add a 127.0.0.1:6789 --fsid "$fsid" "$DATA/monmap" >/dev/null
    ceph-mon --mkfs -i a --monmap "$DATA/monmap"
fi
ceph-mon -i a
if [ ! -f "$DATA/osd/ready" ]; then
    uuid=$(cat /proc/sys/kernel/random/uuid)
    ceph osd new "$uuid" >/dev/null
    mkdir -p "$DATA/osd"
    ceph-osd -i 0 --mkfs --osd-uuid "$uuid"
    ceph osd crush add osd.0 1.0 host=s3store root=default >/dev/null 2>&1
    touch "$DATA/osd/ready"
fi
ceph-osd -i 0
radosgw -n client.rgw.a
if [ ! -f "$DATA/user-created" ]; then
    radosgw-admin user create --uid=tests --display-name=tests \
        --access-key="$(cat /run/secrets/s3/access_key)" \
        --secret-key="$(cat /run/secrets/s3/secret_key)" >/dev/null
    touch "$DATA/user-created"
fi
echo "s3store: S3 on port 7480"

# Daemons that exit stay zombies until this shell (PID 1) reaps them: count live ones only.
running() { pgrep -x -r DRST "$1" >/dev/null; }

# shellcheck disable=SC2329 # invoked by the trap below
stop() {
    # radosgw first, and wait for it: stopped after the OSD it hangs in its shutdown.
    for daemon in radosgw ceph-osd ceph-mon; do
        pkill -TERM -x "$daemon" || true
        for _ in $(seq 100); do
            running "$daemon" || break
            sleep 0.1
        done
    done
    exit 0
}
trap stop TERM INT
while running radosgw; do
    sleep 1 &
    wait $! || true
done
echo "s3store: radosgw exited; see $DATA/log" >&2
exit 1
