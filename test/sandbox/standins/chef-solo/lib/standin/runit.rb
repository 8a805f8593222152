# chef-ha sandbox STAND-IN (part of the chef-solo stand-in, ../../chef-solo.rb) of the runit cookbook's
# `runit_service` definition as Chef Server 11's omnibus ships it (shared/reference/chef-server-11.md
# §1b). Chef expands the definition into directory/template/file/link/ruby_block/service resources;
# the stand-in carries it out as one resource that does the same file work and reports each change:
#   :enable  - sv/<svc>/{run,log/run,log/main/,control/<signal>}, the down file (or its removal),
#              env/ and finish when asked, the init link to sv and the service link; then declares
#              service[<svc>] (sv commands through chpst, action :nothing) for notifications, and
#              restarts it (delayed) when the run script changed and the service was up;
#   :disable - deletes the service link.
# There is no runsvdir in the sandbox. What runsvdir would do when the service link appears or goes
# is done here and said in the output: `sv start` for a new link (unless `down`), `sv stop` before the
# link is removed. The sv stand-in hands both to chef-server-ctl's supervision stand-in.
require_relative 'resources'

class Chef
  class Resource
    class RunitService < Chef::Resource
      SV_DIR = '/opt/chef-server/sv'.freeze
      SERVICE_DIR = '/opt/chef-server/service'.freeze
      INIT_DIR = '/opt/chef-server/init'.freeze
      SV_BIN = '/opt/chef-server/embedded/bin/sv'.freeze
      CHPST_BIN = '/opt/chef-server/embedded/bin/chpst'.freeze
      PARAMS = {
        :directory => nil, :finish_script => false, :control => [], :run_restart => true,
        :active_directory => nil, :init_script_template => nil, :owner => 'root', :group => 'root',
        :template_name => nil, :start_command => 'start', :stop_command => 'stop',
        :restart_command => 'restart', :status_command => 'status', :options => {}, :env => {},
        :down => false, :cookbook => nil
      }.freeze

      resource_name :runit_service
      actions :enable, :disable
      default_action :enable

      def initialize(name, run_context)
        super
        @params = { :name => name, :action => :enable }
        PARAMS.each { |k, v| @params[k] = v.is_a?(Hash) || v.is_a?(Array) ? v.dup : v }
      end

      # the definition's params (the recipe passes `options({...}.merge(params))`)
      attr_reader :params

      PARAMS.each_key do |key|
        define_method(key) do |*args|
          return @params[key] if args.empty?
          raise ArgumentError, "#{key} takes one argument" if args.size > 1
          @params[key] = args.first
        end
      end

      def action(arg = NOT_PASSED)
        result = super
        @params[:action] = Array(arg).first unless arg.equal?(NOT_PASSED)
        result
      end

      def sv_dir
        "#{@params[:directory] || SV_DIR}/#{@name}"
      end

      def service_link
        "#{@params[:active_directory] || SERVICE_DIR}/#{@name}"
      end

      def after_created
        raise NotImplementedError, 'chef-solo stand-in: runit_service init_script_template is not reproduced' if @params[:init_script_template]
        return unless action.include?(:enable)
        control = @params[:owner] ? "#{CHPST_BIN} -u #{@params[:owner]} #{SV_BIN}" : SV_BIN
        p = @params
        link = service_link
        @restart_on_run_change = p[:run_restart] && OmnibusHelper.should_notify?(@name)
        run_context.declare(Chef::Resource::Service, @name, proc {
          supports :restart => true, :status => true
          start_command "#{control} #{p[:start_command]} #{link}"
          stop_command "#{control} #{p[:stop_command]} #{link}"
          restart_command "#{control} #{p[:restart_command]} #{link}"
          status_command "#{control} #{p[:status_command]} #{link}"
          action :nothing
        }, recipe)
      end

      def sub(klass, name, action)
        r = klass.new(name, run_context)
        yield r if block_given?
        r.run(action)
        @changes.concat(r.changes)
        r.updated?
      end

      def template_vars
        @params[:options].respond_to?(:has_key?) ? { :options => @params[:options] } : {}
      end

      def ensure_dir(path)
        sub(Chef::Resource::Directory, path, :create) do |d|
          d.owner(@params[:owner])
          d.group(@params[:group])
          d.mode(0o755)
        end
      end

      def ensure_template(path, source)
        sub(Chef::Resource::Template, path, :create) do |t|
          t.owner(@params[:owner])
          t.group(@params[:group])
          t.mode(0o755)
          t.source(source)
          t.cookbook(@params[:cookbook]) if @params[:cookbook]
          t.variables(template_vars)
        end
      end

      def action_enable
        tn = @params[:template_name] || @name
        ensure_dir(sv_dir)
        ensure_dir("#{sv_dir}/log")
        ensure_dir("#{sv_dir}/log/main")
        run_changed = ensure_template("#{sv_dir}/run", "sv-#{tn}-run.erb")
        ensure_template("#{sv_dir}/log/run", "sv-#{tn}-log-run.erb")
        if @params[:down]
          sub(Chef::Resource::File, "#{sv_dir}/down", :create) { |f| f.mode('0644') }
        else
          sub(Chef::Resource::File, "#{sv_dir}/down", :delete)
        end
        unless @params[:env].empty?
          ensure_dir("#{sv_dir}/env")
          @params[:env].each do |var, value|
            sub(Chef::Resource::File, "#{sv_dir}/env/#{var}", :create) { |f| f.content(value.to_s) }
          end
        end
        ensure_template("#{sv_dir}/finish", "sv-#{tn}-finish.erb") if @params[:finish_script]
        unless @params[:control].empty?
          ensure_dir("#{sv_dir}/control")
          @params[:control].each { |signal| ensure_template("#{sv_dir}/control/#{signal}", "sv-#{tn}-control-#{signal}.erb") }
        end
        if @params[:active_directory].nil? || @params[:active_directory] == SERVICE_DIR
          sub(Chef::Resource::Link, "#{INIT_DIR}/#{@name}", :create) { |l| l.to(SV_BIN) }
        end
        created = sub(Chef::Resource::Link, service_link, :create) { |l| l.to(sv_dir) }
        if created && !@params[:down]
          converge_by("start #{@name} (stand-in for runsvdir picking up the new service link)") do
            shell_out!("#{SV_BIN} start #{service_link}")
          end
        end
        run_context.queue_delayed(:restart, "service[#{@name}]") if run_changed && @restart_on_run_change
      end

      def action_disable
        return unless ::File.symlink?(real(service_link))
        converge_by("stop #{@name} (stand-in for runsvdir stopping the service whose link goes)") do
          shell_out!("#{SV_BIN} stop #{service_link}")
        end
        sub(Chef::Resource::Link, service_link, :delete)
      end
    end
  end
end
