#!/bin/bash
# Healthy when sshd answers with an SSH-2.0 banner on its port.
exec 3<>"/dev/tcp/127.0.0.1/${SFTP_PORT:-2222}" || exit 1
IFS= read -r -t 5 banner <&3 || exit 1
[[ $banner == SSH-2.0-* ]]
