#!/bin/sh
# Removes chef-ha {{version}} installed by install.sh. Configuration (/etc/chef-ha) and state
# (/var/opt/chef-ha: secrets, backups) are kept unless --purge is given.
#   ./uninstall.sh [--root DIR] [--purge]
set -eu
root=/
purge=no
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=${2:?--root needs a folder}; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    --purge) purge=yes; shift ;;
    -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown argument $1 (use --root DIR, --purge)" >&2; exit 2 ;;
  esac
done
for unit in chef-ha-health-server.service chef-ha-monitor.service chef-ha-londiste-daemons.service; do
  rm -f "$root/etc/systemd/system/$unit"
done
rm -f "$root/usr/local/bin/chef-ha-ctl"
rm -rf "$root/opt/chef-ha"
if [ "$purge" = yes ]; then
  rm -rf "$root/etc/chef-ha" "$root/var/opt/chef-ha" "$root/var/log/chef-ha"
fi
echo "chef-ha removed from $root"
