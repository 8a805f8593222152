# managed by chef-ha-ctl 0.0.0-golden: do not edit; `chef-ha-ctl revert` puts the original back
# chef-ha recipe override
#
# Cookbook Name:: chef-server
# Recipe:: postgresql (chef-ha override)
#
# The package's recipe runs an embedded PostgreSQL 9.2 under runit. This replacement makes
# chef-server use the distribution's PostgreSQL 15 cluster instead, the one chef-ha
# replicates. It is written for the Ruby 1.9.3 embedded in Chef Server 11 (no `&.`, no keyword
# arguments, no squiggly heredocs).
#
# What it does, every run:
#  * keeps the embedded cluster's runit service disabled;
#  * on a writable primary only, creates what is missing: the opscode_chef database, its schema,
#    the opscode_chef / opscode_chef_ro roles and their grants;
#  * on a standby it touches nothing in the database (everything there arrives by replication);
#  * it never changes server settings: chef-ha manages those in conf.d/chef-ha.conf.
#
# setup-* writes the attributes read below into /etc/chef-server/chef-server.rb.

pg_attrs   = node['chef_server']['postgresql']
bin_dir    = pg_attrs['chef_ha_bindir'] || '/usr/lib/postgresql/15/bin'
socket_dir = pg_attrs['chef_ha_socket_dir'] || '/var/run/postgresql'
os_user    = pg_attrs['chef_ha_os_user'] || 'postgres'
pg_port    = pg_attrs['port'] || 5432
ha_mode    = pg_attrs['chef_ha_mode'] || 'streaming'
sql_user   = pg_attrs['sql_user']
sql_ro     = pg_attrs['sql_ro_user']
database   = 'opscode_chef'

psql = "#{bin_dir}/psql -X -q -A -t -h #{socket_dir} -p #{pg_port}"
is_primary = "#{psql} -d postgres -c 'SELECT pg_is_in_recovery()' | grep -qx f"
answers = "#{psql} -d postgres -c 'SELECT 1' | grep -qx 1"
database_exists = "#{psql} -d postgres -c \"SELECT 1 FROM pg_database WHERE datname = '#{database}'\" | grep -qx 1"
schema_exists = "#{psql} -d #{database} -c \"SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = 'clients'\" | grep -qx 1"

# Chef 11 runs a String guard as root with only the guard's own options (not the resource's `user`),
# so every guard below names the PostgreSQL OS user. Methods defined in a recipe are not visible
# inside resource blocks (self is the resource there): guards are computed outside the blocks.
as_os_user = { :user => os_user }

def chef_ha_role_exists(psql, role)
  "#{psql} -d postgres -c \"SELECT 1 FROM pg_roles WHERE rolname = '#{role}'\" | grep -qx 1"
end

def chef_ha_can_write(psql, database, role)
  "#{psql} -d #{database} -c \"SELECT has_table_privilege('#{role}', 'public.clients', 'INSERT')\" | grep -qx t"
end

def chef_ha_can_read(psql, database, role)
  "#{psql} -d #{database} -c \"SELECT has_table_privilege('#{role}', 'public.clients', 'SELECT')\" | grep -qx t"
end

runit_service 'postgresql' do
  action :disable
end

# Fails the run, naming this resource, when the distribution cluster does not answer (instead of
# skipping everything below and leaving erchef without a database).
execute 'chef-ha check postgresql' do
  command "#{psql} -d postgres -c 'SELECT 1'"
  user os_user
  not_if answers, as_os_user
end

execute "create #{database} database" do
  command "#{bin_dir}/createdb -h #{socket_dir} -p #{pg_port} -T template0 -E UTF-8 #{database}"
  user os_user
  only_if is_primary, as_os_user
  not_if database_exists, as_os_user
end

execute 'install_schema' do
  command "sqitch --db-client #{bin_dir}/psql --db-host #{socket_dir} --db-port #{pg_port} --db-user #{os_user} deploy --verify"
  cwd '/opt/chef-server/embedded/service/chef-server-schema'
  user os_user
  only_if is_primary, as_os_user
  not_if schema_exists, as_os_user
end

# Chef 11's erchef logs in with md5 authentication (its PostgreSQL client predates SCRAM), so its roles'
# passwords are stored as md5 even where the server's default is scram-sha-256 (PostgreSQL 14+); chef-ha's
# pg_hba block admits these roles with md5. Before PostgreSQL 10 md5 is the only way they are stored.
md5_first = pg_attrs['chef_ha_version'].to_s.to_f >= 10 ? "SET password_encryption = 'md5';" : ''

# Passwords go through a script file (mode 0600), never through a command line.
{ sql_user => pg_attrs['sql_password'], sql_ro => pg_attrs['sql_ro_password'] }.each do |role, password|
  role_exists = chef_ha_role_exists(psql, role)
  bash "create database role #{role}" do
    user os_user
    code <<-EOH
#{psql} -d postgres -v ON_ERROR_STOP=1 <<'SQL'
#{md5_first}
CREATE ROLE "#{role}" LOGIN NOSUPERUSER PASSWORD '#{password.to_s.gsub("'", "''")}';
SQL
    EOH
    only_if is_primary, as_os_user
    not_if role_exists, as_os_user
  end
end

can_write = chef_ha_can_write(psql, database, sql_user)
bash "grant #{sql_user} write access" do
  user os_user
  code <<-EOH
#{psql} -d #{database} -v ON_ERROR_STOP=1 <<'SQL'
GRANT CONNECT, TEMPORARY ON DATABASE #{database} TO "#{sql_user}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT, SELECT, UPDATE, DELETE ON TABLES TO "#{sql_user}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, UPDATE ON SEQUENCES TO "#{sql_user}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO "#{sql_user}";
GRANT INSERT, SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "#{sql_user}";
GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "#{sql_user}";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO "#{sql_user}";
SQL
  EOH
  only_if is_primary, as_os_user
  not_if can_write, as_os_user
end

can_read = chef_ha_can_read(psql, database, sql_ro)
bash "grant #{sql_ro} read access" do
  user os_user
  code <<-EOH
#{psql} -d #{database} -v ON_ERROR_STOP=1 <<'SQL'
GRANT CONNECT ON DATABASE #{database} TO "#{sql_ro}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "#{sql_ro}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO "#{sql_ro}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO "#{sql_ro}";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "#{sql_ro}";
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO "#{sql_ro}";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO "#{sql_ro}";
SQL
  EOH
  only_if is_primary, as_os_user
  not_if can_read, as_os_user
end

# Londiste: the role chef-server writes with must be allowed to fire pgq's triggers on any node that
# may become the root.
if ha_mode == 'londiste'
  pgq_writer_exists = chef_ha_role_exists(psql, 'pgq_writer')
  execute "grant pgq_writer to #{sql_user}" do
    command "#{psql} -d #{database} -c 'GRANT pgq_writer TO \"#{sql_user}\"'"
    user os_user
    only_if "#{is_primary} && #{pgq_writer_exists}", as_os_user
    not_if "#{psql} -d #{database} -c \"SELECT pg_has_role('#{sql_user}', 'pgq_writer', 'MEMBER')\" | grep -qx t", as_os_user
  end
end
