#!/usr/bin/env ruby
#
# chef-ha sandbox STAND-IN of chef-solo as Chef Server 11's `chef-server-ctl reconfigure` runs it
# (shared/reference/chef-server-11.md §0, §1). NOT Chef: a small re-implementation, on Debian's Ruby,
# of what the chef-server cookbook's postgresql recipes need, so that the INSTALLED
# <root>/opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb (the faithful 11.1.7
# original, or chef-ha's override) is really executed as Ruby:
#
#   - node attributes: attributes/default.rb, the sandbox host file, chef-server.rb, the secrets file
#     (lib/standin/node.rb);
#   - the cookbook's libraries/*.rb (PgHelper, OmnibusHelper) with a Mixlib::ShellOut stand-in;
#   - compile, then converge: user, group, directory, file, template (ERB), link, execute, bash,
#     service, ruby_block, runit_service, chef_server_pg_user, chef_server_pg_user_table_access
#     (lib/standin/*.rb); an unknown resource, attribute or action is an error;
#   - chef-solo's doc-formatter lines (`Recipe: chef-server::postgresql`,
#     `  * execute[createdb] action run`, `    - execute ...`, `(skipped due to not_if)`, `(up to date)`).
#
# The node root stands in for "/": real-layout paths are mapped under it (lib/standin/root.rb), and the
# OS account opscode-pgsql is played by postgres. Every command the run starts sees the embedded
# PostgreSQL build's compiled-in libpq defaults (socket /tmp, port 5432) as PGHOST=<root>/tmp and
# PGPORT=<the host file's embedded port>, and PATH starts with /opt/chef-server/{bin,embedded/bin}.
#
# The TypeScript reconfigure stand-in (../reconfigure.ts) runs this for the postgresql step of
# default.rb's service loop and does the other steps (secrets, erchef, bootstrap, placeholders,
# chef-server-running.json) itself.
#
# Usage:
#   chef-solo.rb --root NODE_ROOT [--sandbox DIR] --result FILE       # the postgresql step
#   chef-solo.rb --root NODE_ROOT [--sandbox DIR] --show-config       # ChefServer.generate_config JSON
# Exit 0 on success, 1 on failure (the failing resource is named in the output and the result file).
require 'json'
$LOAD_PATH.unshift(File.join(__dir__, 'lib'))
require 'standin/root'
require 'standin/node'
require 'standin/core'
require 'standin/resources'
require 'standin/runit'
require 'standin/pg'

module StandIn
  COOKBOOK = '/opt/chef-server/embedded/cookbooks/chef-server'.freeze
  RULE = '=' * 80

  module Main
    module_function

    def parse(argv)
      opts = {}
      until argv.empty?
        arg = argv.shift
        case arg
        when '--root' then opts[:root] = argv.shift
        when '--sandbox' then opts[:sandbox] = argv.shift
        when '--result' then opts[:result] = argv.shift
        when '--show-config' then opts[:show_config] = true
        else
          warn "chef-solo stand-in: unknown argument #{arg}"
          exit 2
        end
      end
      unless opts[:root] && (opts[:result] || opts[:show_config])
        warn 'usage: chef-solo.rb --root NODE_ROOT [--sandbox DIR] (--result FILE | --show-config)'
        exit 2
      end
      opts
    end

    def setup(opts)
      StandIn.root = File.expand_path(opts[:root])
      StandIn.sandbox = opts[:sandbox] && File.expand_path(opts[:sandbox])
      StandIn.install_file_queries
      $stdout.sync = true
    end

    def process_env
      ENV['PATH'] = "#{StandIn.path('/opt/chef-server/bin')}:#{StandIn.path('/opt/chef-server/embedded/bin')}:#{ENV['PATH']}"
      ENV['PGHOST'] = StandIn.path('/tmp')
      ENV['PGPORT'] = StandIn.default_pg_port
      ENV['TMPDIR'] = StandIn.path('/tmp')
    end

    def show_config
      config = ChefServerConfig.new
      host_file = "#{StandIn.root}/etc/chef-standin-host.rb"
      config.from_file(host_file) if File.exist?(host_file)
      config.from_file('/etc/chef-server/chef-server.rb') if File.exist?('/etc/chef-server/chef-server.rb')
      config.postgresql['listen_address'] ||= '0.0.0.0'
      secrets = '/etc/chef-server/chef-server-secrets.json'
      JSON.parse(File.read(secrets)).each { |svc, h| h.each { |k, v| config[svc][k] = v } } if File.exist?(secrets)
      hash = {}
      ChefServerConfig::SERVICES.each { |s| hash[s.tr('_', '-')] = StandIn.plain(config.send(s)) }
      puts JSON.pretty_generate('chef_server' => hash.merge(StandIn.plain(config.generate_hash)))
      0
    end

    # the message without Ruby 3.1's error_highlight snippet (Chef 11's Ruby has none)
    def message_of(error)
      error.respond_to?(:original_message) ? error.original_message : error.message
    end

    # backtrace lines in cookbook files, as "Cookbook Trace"
    def cookbook_trace(error)
      (error.backtrace || []).select { |l| l.start_with?(COOKBOOK) }.first(5)
    end

    def relevant_lines(file, lineno, around = 4)
      lines = File.readlines(StandIn.path(file))
      from = [lineno - around, 1].max
      to = [lineno + around, lines.size].min
      (from..to).map { |n| format('%3d%s %s', n, n == lineno ? '>>' : ': ', lines[n - 1].chomp) }
    rescue StandardError
      []
    end

    def declaration(source_line)
      return [] unless source_line
      file, line = source_line.split(':')
      lines = File.readlines(StandIn.path(file))
      n = line.to_i
      indent = lines[n - 1][/\A */].size
      out = []
      (n..lines.size).each do |i|
        out << format('%3d: %s', i, lines[i - 1].chomp)
        break if i > n && lines[i - 1] =~ /\A {#{indent}}end\b/
        break if out.size > 40
      end
      ["# In #{file}", ''] + out
    rescue StandardError
      []
    end

    def headline(title, exception, message, extra)
      Out.line
      Out.line(RULE)
      Out.line(title)
      Out.line(RULE)
      Out.line
      name = exception.to_s
      Out.line(name)
      Out.line('-' * name.length)
      message.to_s.split("\n").each { |l| Out.line(l) }
      extra.each do |(heading, lines)|
        next if lines.empty?
        Out.line
        Out.line(heading)
        Out.line('-' * heading.length)
        lines.each { |l| Out.line(l) }
      end
      Out.line
    end

    def converge(opts)
      result = { 'updated' => 0, 'failed' => nil, 'chef_server' => nil }
      context = nil
      phase = :compile
      begin
        node = Node.for_chef_server(COOKBOOK)
        result['chef_server'] = StandIn.plain(node.merged['chef_server'])
        process_env
        context = RunContext.new(node, COOKBOOK)
        context.load_libraries
        # default.rb's service loop, for the postgresql step
        if node['chef_server']['postgresql']['enable']
          context.include_recipe('chef-server::postgresql')
        else
          context.include_recipe('chef-server::postgresql_disable')
        end
        phase = :converge
        context.converge
        result['updated'] = context.updated_count
        0
      rescue ResourceFailed => e
        cause = e.cause_error
        headline("Error executing action `#{e.action}` on resource '#{e.resource}'", cause.class, message_of(cause),
                 [['Resource Declaration:', declaration(e.resource.source_line)]])
        result['failed'] = { 'resource' => e.resource.to_s, 'action' => e.action.to_s,
                             'exception' => cause.class.to_s, 'message' => message_of(cause) }
        1
      rescue StandardError, ScriptError => e
        file_line = (e.backtrace || []).find { |l| l.start_with?(COOKBOOK) }
        file, line = file_line ? file_line.split(':') : [COOKBOOK, '0']
        title = phase == :compile ? "Recipe Compile Error in #{file}" : 'Error converging the chef-server cookbook'
        headline(title, e.class, message_of(e),
                 [['Cookbook Trace:', cookbook_trace(e).map { |l| "  #{l}" }],
                  ['Relevant File Content:', file_line ? ["#{file}:", ''] + relevant_lines(file, line.to_i) : []]])
        result['failed'] = { 'resource' => nil, 'action' => nil, 'exception' => e.class.to_s, 'message' => message_of(e) }
        1
      ensure
        result['updated'] = context.updated_count if context
        File.write(opts[:result], JSON.generate(result)) if opts[:result]
      end
    end

    def main(argv)
      opts = parse(argv)
      setup(opts)
      opts[:show_config] ? show_config : converge(opts)
    end
  end
end

exit(StandIn::Main.main(ARGV.dup))
