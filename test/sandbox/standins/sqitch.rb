#!/usr/bin/env ruby
#
# chef-ha sandbox STAND-IN of sqitch 0.973 (the schema tool in Chef Server 11.1's embedded bin), as the
# chef-server recipes call it from /opt/chef-server/embedded/service/chef-server-schema:
#
#   sqitch [--db-client PSQL] [--db-host H] [--db-port P] [--db-user U] [--db-name D] deploy [--verify]
#   sqitch [...] status | verify
#
# The project is the directory's sqitch.conf ([core "pg"] db_name). `deploy` applies
# deploy/schema.stand-in.sql (the sandbox's opscode_chef schema fixture, which also fills the sqitch
# registry) when the registry lists none of the oss_chef changes, and prints "Nothing to deploy
# (up-to-date)" when it lists all of them; anything in between is refused. Without --db-host/--db-port/
# --db-user, psql's libpq defaults apply (the reconfigure stand-in sets those of the embedded build).
# Installed by the sandbox as <root>/opt/chef-server/embedded/bin/sqitch.
require 'open3'

CHANGES = %w[osc_users nodes clients roles data_bags data_bag_items environments checksums
             sandboxed_checksums cookbooks cookbook_versions cookbook_version_checksums
             cookbook_versions_by_rank cookbook_version_dependencies joined_cookbook_version
             cookbook_version_checksums_by_org_id_checksum_index node_external_storage purge_sequel
             cookbook_versions_cookbook_id_index].freeze

def fail!(msg, code = 2)
  warn msg
  exit code
end

opts = { 'client' => 'psql' }
args = ARGV.dup
command = nil
command_opts = []
until args.empty?
  a = args.shift
  case a
  when '--db-client', '--client' then opts['client'] = args.shift
  when '--db-host', '-h' then opts['host'] = args.shift
  when '--db-port', '-p' then opts['port'] = args.shift
  when '--db-user', '--db-username', '-u' then opts['user'] = args.shift
  when '--db-name', '-d' then opts['name'] = args.shift
  when /\A--(db-client|db-host|db-port|db-user|db-name)=(.*)\z/
    opts[{ 'db-client' => 'client', 'db-host' => 'host', 'db-port' => 'port', 'db-user' => 'user', 'db-name' => 'name' }[$1]] = $2
  when /\A-/
    command ? command_opts << a : fail!("Unknown option: #{a.sub(/\A-+/, '')}")
  else
    command ? command_opts << a : command = a
  end
end
fail!('Usage: sqitch [options] <command> [command-options] [args]') unless command
unless %w[deploy status verify].include?(command)
  fail!("\"#{command}\" is not a valid command (chef-ha sandbox stand-in: deploy, status and verify only)")
end
bad = command_opts - %w[--verify --no-verify]
fail!("Unknown option: #{bad.first.sub(/\A-+/, '')}") unless bad.empty?
fail!('No project configuration found. Run the "init" command to initialize a project', 1) unless File.exist?('sqitch.conf')
conf = File.read('sqitch.conf')
db = opts['name'] || conf[/^\s*db_name\s*=\s*(\S+)/, 1] || fail!('No database name in sqitch.conf', 1)

def psql(opts, db, extra, input = nil)
  argv = [opts['client'], '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1']
  argv += ['-h', opts['host']] if opts['host']
  argv += ['-p', opts['port']] if opts['port']
  argv += ['-U', opts['user']] if opts['user']
  Open3.capture3(*argv, '-d', db, *extra, stdin_data: input.to_s)
end

out, _err, st = psql(opts, db, ['-c', "select count(*) from sqitch.changes where project = 'oss_chef'"])
deployed = st.success? ? out.strip.to_i : 0
if command != 'deploy'
  if deployed == CHANGES.size
    puts "# On database #{db}\n# Project:  oss_chef\n# Change:   cookbook_versions_cookbook_id_index\n#\nNothing to deploy (up-to-date)"
    exit 0
  end
  puts "# On database #{db}\n# Project:  oss_chef\n#\nUndeployed changes:\n" + CHANGES.drop(deployed).map { |c| "  * #{c}" }.join("\n")
  exit(command == 'verify' ? 1 : 0)
end
if deployed == CHANGES.size
  puts 'Nothing to deploy (up-to-date)'
  exit 0
end
fail!("chef-ha sandbox sqitch stand-in: #{deployed} of #{CHANGES.size} oss_chef changes are deployed; a partial deployment is not reproduced", 1) if deployed.positive?
schema = File.join('deploy', 'schema.stand-in.sql')
fail!("Cannot open #{schema}: No such file or directory", 1) unless File.exist?(schema)
_out, err, st = psql(opts, db, ['-f', '-'], File.read(schema))
unless st.success?
  warn err
  fail!("Deploy failed", 1)
end
puts "Deploying changes to pg:#{db}"
CHANGES.each { |c| puts "  + #{c} .. ok" }
