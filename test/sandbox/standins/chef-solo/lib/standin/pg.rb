# chef-ha sandbox STAND-IN (part of the chef-solo stand-in, ../../chef-solo.rb) of the chef-server
# cookbook's LWRPs chef_server_pg_user and chef_server_pg_user_table_access (11.1.2+) and of their
# connection helper EcPostgres (shared/reference/chef-server-11.md §1a). Real SQL on the node's
# PostgreSQL. The real LWRPs use the pg gem as OS user opscode-pgsql with no host or port, i.e. the
# embedded build's libpq defaults (/tmp, 5432); here psql runs as the account that plays
# opscode-pgsql, with those defaults mapped (PGHOST=<root>/tmp, PGPORT=the host file's embedded port).
# Stand-in differences (docs/sandbox.md): pg_user also accepts a SCRAM verifier that matches the
# password (PostgreSQL 15 stores SCRAM; the real LWRP compares md5 only); pg_user_table_access runs
# its GRANTs only when one is missing (the real one runs them on every converge).
require 'base64'
require 'openssl'
require_relative 'resources'

module StandIn
  module Pg
    PSQL = '/opt/chef-server/embedded/bin/psql'.freeze

    # Runs a SQL script (stdin) as the node's postgresql username; psql variables via -v.
    def self.run(node, database, script, vars = {})
      argv = [PSQL, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1']
      vars.each { |k, v| argv += ['-v', "#{k}=#{v}"] }
      argv += ['-d', database, '-f', '-']
      cmd = Mixlib::ShellOut.new(argv, :user => node['chef_server']['postgresql']['username'], :input => script)
      cmd.run_command
      raise "PG::Error: #{cmd.stderr.strip}" unless cmd.exitstatus.zero?
      cmd.stdout.split("\n").reject(&:empty?).map { |l| l.split('|', -1) }
    end

    def self.escape(s)
      s.to_s.gsub("'", "''")
    end

    # PGconn.encrypt_password (md5) or a PostgreSQL 10+ SCRAM-SHA-256 verifier.
    def self.password_matches?(verifier, user, password)
      if (m = /\ASCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)\z/.match(verifier))
        salted = OpenSSL::PKCS5.pbkdf2_hmac(password, Base64.decode64(m[2]), m[1].to_i, 32, 'sha256')
        client_key = OpenSSL::HMAC.digest('SHA256', salted, 'Client Key')
        Base64.strict_encode64(OpenSSL::Digest::SHA256.digest(client_key)) == m[3]
      else
        verifier == "md5#{OpenSSL::Digest::MD5.hexdigest(password + user)}"
      end
    end
  end
end

class Chef
  class Resource
    class ChefServerPgUser < Chef::Resource
      resource_name :chef_server_pg_user
      actions :create
      default_action :create
      attribute :username, :kind_of => String, :name_attribute => true
      attribute :password, :kind_of => String
      attribute :superuser, :kind_of => [TrueClass, FalseClass], :default => false

      def action_create
        rows = StandIn::Pg.run(node, 'template1',
                               "select usesuper, coalesce(passwd, '') from pg_shadow where usename = :'u';\n",
                               'u' => username)
        sql = ''
        if rows.empty?
          changes = ["Create Postgres user #{username}"]
          if superuser
            changes << "  Set superuser to #{superuser}"
            sql << ' SUPERUSER'
          end
          if password
            changes << '  Update password'
            sql << " ENCRYPTED PASSWORD '#{StandIn::Pg.escape(password)}'"
          end
          converge_by(changes) { StandIn::Pg.run(node, 'template1', "CREATE USER #{username}#{sql};\n") }
          return
        end
        current_super, verifier = rows.first
        changes = ["Update Postgres user #{username}"]
        if current_super != (superuser ? 't' : 'f')
          changes << "  Set superuser to #{superuser}"
          sql << (superuser ? ' SUPERUSER' : ' NOSUPERUSER')
        end
        if password && !StandIn::Pg.password_matches?(verifier.to_s, username, password)
          changes << '  Update password'
          sql << " ENCRYPTED PASSWORD '#{StandIn::Pg.escape(password)}'"
        end
        return if changes.size == 1
        converge_by(changes) { StandIn::Pg.run(node, 'template1', "ALTER USER #{username}#{sql};\n") }
      end
    end

    class ChefServerPgUserTableAccess < Chef::Resource
      resource_name :chef_server_pg_user_table_access
      actions :create
      default_action :create
      attribute :username, :kind_of => String, :name_attribute => true
      attribute :database, :kind_of => String
      attribute :schema, :kind_of => String
      attribute :access_profile, :kind_of => Symbol, :equal_to => [:read, :write]

      PROFILES = {
        :write => { :database => 'CONNECT, TEMPORARY', :tables => 'INSERT, SELECT, UPDATE, DELETE',
                    :sequences => 'SELECT, UPDATE', :functions => 'EXECUTE' },
        :read => { :database => 'CONNECT', :tables => 'SELECT', :sequences => 'SELECT', :functions => 'EXECUTE' }
      }.freeze

      def complete?
        write = access_profile == :write
        check = <<-SQL
select has_database_privilege(:'u', :'db', '#{write ? 'TEMPORARY' : 'CONNECT'}')
  and not exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = :'s' and case c.relkind
      when 'r' then not has_table_privilege(:'u', c.oid, '#{write ? 'INSERT' : 'SELECT'}')
      when 'p' then not has_table_privilege(:'u', c.oid, '#{write ? 'INSERT' : 'SELECT'}')
      when 'S' then not has_sequence_privilege(:'u', c.oid, '#{write ? 'UPDATE' : 'SELECT'}')
      else false end)
  and exists (select 1 from pg_default_acl d join pg_namespace n on n.oid = d.defaclnamespace
    where n.nspname = :'s' and d.defaclobjtype = 'r'
    and array_to_string(d.defaclacl, ',') like '%' || :'u' || '=%');
        SQL
        StandIn::Pg.run(node, database, check, 'u' => username, 'db' => database, 's' => schema).first == ['t']
      end

      def action_create
        raise ArgumentError, "#{self}: database and schema are required" if database.nil? || schema.nil?
        return if complete?
        access = PROFILES.fetch(access_profile)
        [
          "GRANT #{access[:database]} ON DATABASE #{database} TO #{username}",
          "ALTER DEFAULT PRIVILEGES IN SCHEMA #{schema} GRANT #{access[:functions]} ON FUNCTIONS TO #{username};",
          "GRANT #{access[:functions]} ON ALL FUNCTIONS IN SCHEMA #{schema} TO #{username}",
          "ALTER DEFAULT PRIVILEGES IN SCHEMA #{schema} GRANT #{access[:sequences]} ON SEQUENCES TO #{username};",
          "GRANT #{access[:sequences]} ON ALL SEQUENCES IN SCHEMA #{schema} TO #{username}",
          "ALTER DEFAULT PRIVILEGES IN SCHEMA #{schema} GRANT #{access[:tables]} ON TABLES TO #{username};",
          "GRANT #{access[:tables]} ON ALL TABLES IN SCHEMA #{schema} TO #{username}"
        ].each do |sql|
          converge_by(sql) { StandIn::Pg.run(node, database, "#{sql.chomp(';')};\n") }
        end
      end
    end
  end
end
