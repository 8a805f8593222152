# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)
postgresql['vip'] = '127.0.0.1'
postgresql['port'] = 5432
postgresql['chef_ha_bindir'] = '/usr/lib/postgresql/9.2/bin'
postgresql['chef_ha_socket_dir'] = '/var/run/postgresql'
postgresql['chef_ha_os_user'] = 'postgres'
postgresql['chef_ha_version'] = '9.2'
postgresql['chef_ha_mode'] = 'streaming'
# END chef-ha
