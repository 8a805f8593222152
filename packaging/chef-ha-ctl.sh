#!/bin/sh
# chef-ha-ctl: runs chef-ha with its own Node.js (omnibus layout: <root>/bin, <root>/embedded).
# Follows symlinks such as /usr/bin/chef-ha-ctl to find <root> (with readlink, found without PATH too);
# a direct call needs nothing but sh.
self=$0
while [ -L "$self" ]; do
  target=$(readlink "$self" 2>/dev/null || /bin/readlink "$self")
  case $target in
    /*) self=$target ;;
    *) self=${self%/*}/$target ;;
  esac
done
root=${self%/*}/..
exec "$root/embedded/bin/node" "$root/embedded/lib/chef-ha/dist/cli.js" "$@"
