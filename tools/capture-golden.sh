#!/bin/sh
# Capture a Greengrass golden device into one archive that `compose` reads.
#
#   sudo sh capture-golden.sh /path/to/golden-device.tar.gz
#
# Run it ON the golden device, as root. It stops Greengrass and Docker so nothing writes while the
# snapshot is taken (a snapshot taken mid-update has alts/old or alts/new and is refused), then
# tars /greengrass/v2, /etc/systemd/system, the Greengrass unit wherever systemd loads it from
# (FragmentPath: /lib/systemd/system on Yocto/meta-aws) with its drop-ins, and /var/lib/docker,
# with xattrs (overlay whiteouts and opaque folders, file capabilities), POSIX ACLs and numeric
# owners, and restarts the services.
# Nothing is sanitized here: composer does that, and reports what it removed.
set -eu

out=${1:?usage: capture-golden.sh OUT.tar.gz}
gg_root=${GG_ROOT:-/greengrass/v2}
unit=${GG_UNIT:-greengrass.service}
paths="$gg_root /etc/systemd/system"
# where systemd really loads the unit from (meta-aws installs it to /lib/systemd/system), and
# its drop-in files; compose finds it there when systemd.from is the snapshot's root
for p in $(systemctl show -p FragmentPath -p DropInPaths --value "$unit" 2>/dev/null); do
    case $p in
        /etc/systemd/system/*) ;;  # already in the archive
        /*) [ -e "$p" ] && paths="$paths $p" ;;
    esac
done
[ -d /var/lib/docker ] && paths="$paths /var/lib/docker"

if [ "$(id -u)" != 0 ]; then
    echo "capture-golden.sh: run as root (owners, xattrs and 0600 keys need it)" >&2
    exit 1
fi

restart() {
    systemctl start docker.service 2>/dev/null || true
    systemctl start greengrass.service 2>/dev/null || true
}
trap restart EXIT

systemctl stop greengrass.service 2>/dev/null || true
systemctl stop docker.service docker.socket 2>/dev/null || true

# GNU tar: --xattrs-include='*' keeps trusted.* and security.* too (the default is user.* only)
tar --create --gzip --file "$out" \
    --xattrs --xattrs-include='*' --acls --numeric-owner \
    --sparse --one-file-system \
    $paths

echo "capture-golden.sh: wrote $out" >&2
