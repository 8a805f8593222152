#!/bin/sh
# Installs chef-ha {{version}} from this folder: ROOT/opt/chef-ha, the command linked as
# ROOT/usr/local/bin/chef-ha-ctl, and the systemd units copied when ROOT/etc/systemd/system exists.
# No service is enabled or started. Needs no network and no system Node.js.
#   ./install.sh [--root DIR]        (default: /)
set -eu
root=/
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=${2:?--root needs a folder}; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (use --root DIR)" >&2; exit 2 ;;
  esac
done
here=$(cd "${0%/*}" && pwd)
dest=$root/opt/chef-ha
mkdir -p "$root/opt"
rm -rf "$dest.new"
cp -a "$here/opt/chef-ha" "$dest.new"
if [ -e "$dest" ]; then
  rm -rf "$dest.old"
  mv "$dest" "$dest.old"
fi
mv "$dest.new" "$dest"
rm -rf "$dest.old"
mkdir -p "$root/usr/local/bin"
ln -sfn ../../../opt/chef-ha/bin/chef-ha-ctl "$root/usr/local/bin/chef-ha-ctl"
if [ -d "$root/etc/systemd/system" ]; then
  for unit in "$dest"/service/systemd/*.service; do
    cp "$unit" "$root/etc/systemd/system/"
  done
fi
echo "chef-ha {{version}} installed in $dest; run: chef-ha-ctl --help"
