# chef-ha sandbox STAND-IN (part of the chef-solo stand-in, ../../chef-solo.rb): the Chef 11 resources
# the chef-server cookbook's recipes use, with their providers folded in. Paths are real-layout paths,
# mapped under the node root (StandIn.path) where they touch the machine.
require 'digest'
require 'erb'
require 'tempfile'
require_relative 'core'

class Chef
  class Resource
    # user: the sandbox creates no OS accounts here. An account that exists is up to date; the mapped
    # account opscode-pgsql is played by postgres (reported as a stand-in skip); any other is refused.
    class User < Chef::Resource
      resource_name :user
      actions :create, :remove, :modify, :manage, :lock, :unlock
      default_action :create
      attribute :username, :kind_of => String, :name_attribute => true
      attribute :comment, :kind_of => String
      attribute :uid, :kind_of => [String, Integer]
      attribute :gid, :kind_of => [String, Integer]
      attribute :home, :kind_of => String
      attribute :shell, :kind_of => String
      attribute :password, :kind_of => String
      attribute :system, :kind_of => [TrueClass, FalseClass], :default => false
      attribute :manage_home, :kind_of => [TrueClass, FalseClass], :default => false

      def action_create
        if StandIn.mapped_account?(username)
          os = StandIn.os_user(username)
          Etc.getpwnam(os)
          self.standin_note = "skipped: stand-in, OS user #{os} plays #{username} in the sandbox"
          return
        end
        Etc.getpwnam(username)
      rescue ArgumentError
        raise Chef::Exceptions::Exec,
              "chef-solo stand-in: creating OS user #{username} on this machine is not reproduced (only existing accounts pass)"
      end

      %i[remove modify manage lock unlock].each do |a|
        define_method("action_#{a}") { raise NotImplementedError, "chef-solo stand-in: user action :#{a} is not reproduced" }
      end
    end

    class Group < Chef::Resource
      resource_name :group
      actions :create, :remove, :modify, :manage
      default_action :create
      attribute :group_name, :kind_of => String, :name_attribute => true
      attribute :gid, :kind_of => [String, Integer]
      attribute :members, :kind_of => [String, Array]
      attribute :system, :kind_of => [TrueClass, FalseClass], :default => false
      attribute :append, :kind_of => [TrueClass, FalseClass], :default => false

      def action_create
        if StandIn.mapped_account?(group_name)
          os = StandIn.os_user(group_name)
          Etc.getgrnam(os)
          self.standin_note = "skipped: stand-in, OS group #{os} plays #{group_name} in the sandbox"
          return
        end
        Etc.getgrnam(group_name)
        raise NotImplementedError, 'chef-solo stand-in: group members are not reproduced' if members
      rescue ArgumentError
        raise Chef::Exceptions::Exec,
              "chef-solo stand-in: creating OS group #{group_name} on this machine is not reproduced (only existing groups pass)"
      end

      %i[remove modify manage].each do |a|
        define_method("action_#{a}") { raise NotImplementedError, "chef-solo stand-in: group action :#{a} is not reproduced" }
      end
    end

    class Directory < Chef::Resource
      resource_name :directory
      actions :create, :delete
      default_action :create
      attribute :path, :kind_of => String, :name_attribute => true
      attribute :owner, :kind_of => [String, Integer]
      attribute :group, :kind_of => [String, Integer]
      attribute :mode, :kind_of => [String, Integer]
      attribute :recursive, :kind_of => [TrueClass, FalseClass], :default => false

      def action_create
        p = real(path)
        unless ::File.directory?(p)
          if !recursive && !::File.directory?(::File.dirname(p))
            raise Chef::Exceptions::EnclosingDirectoryDoesNotExist,
                  "Parent directory #{::File.dirname(path)} does not exist, cannot create #{path}"
          end
          converge_by("create new directory #{path}") { FileUtils.mkdir_p(p) }
        end
        descs = apply_attributes(p, owner, group, mode)
        converge_by(descs) unless descs.empty?
      end

      def action_delete
        p = real(path)
        return unless ::File.directory?(p)
        converge_by("delete existing directory #{path}") { recursive ? FileUtils.rm_rf(p) : Dir.rmdir(p) }
      end
    end

    class File < Chef::Resource
      resource_name :file
      actions :create, :delete, :touch, :create_if_missing
      default_action :create
      attribute :path, :kind_of => String, :name_attribute => true
      attribute :content, :kind_of => String
      attribute :owner, :kind_of => [String, Integer]
      attribute :group, :kind_of => [String, Integer]
      attribute :mode, :kind_of => [String, Integer]
      attribute :backup, :kind_of => [Integer, FalseClass], :default => 5

      def action_create
        write_content(desired_content)
      end

      def action_create_if_missing
        return action_create unless ::File.exist?(real(path))
        descs = apply_attributes(real(path), owner, group, mode)
        converge_by(descs) unless descs.empty?
      end

      def action_touch
        action_create
        converge_by("update utime on file #{path}") { FileUtils.touch(real(path)) }
      end

      def action_delete
        p = real(path)
        return unless ::File.exist?(p) || ::File.symlink?(p)
        converge_by("delete file #{path}") { ::File.unlink(p) }
      end

      def desired_content
        content
      end

      def short(text)
        Digest::SHA256.hexdigest(text)[0, 6]
      end

      def write_content(want)
        p = real(path)
        unless ::File.directory?(::File.dirname(p))
          raise Chef::Exceptions::EnclosingDirectoryDoesNotExist, "Parent directory #{::File.dirname(path)} does not exist."
        end
        exists = ::File.exist?(p)
        current = exists ? ::File.binread(p) : nil
        if !exists
          converge_by(["create new file #{path}"] + (want.nil? ? [] : ["update content in file #{path} from none to #{short(want)}"])) do
            tmp = "#{p}.chef-standin-#{$$}"
            ::File.binwrite(tmp, want.to_s)
            ::File.rename(tmp, p)
          end
        elsif !want.nil? && current.b != want.b
          converge_by("update content in file #{path} from #{short(current)} to #{short(want)}") do
            st = ::File.stat(p)
            tmp = "#{p}.chef-standin-#{$$}"
            ::File.binwrite(tmp, want)
            ::File.chmod(st.mode & 0o7777, tmp)
            ::File.chown(st.uid, st.gid, tmp)
            ::File.rename(tmp, p)
          end
        end
        descs = apply_attributes(p, owner, group, mode)
        converge_by(descs) unless descs.empty?
      end
    end

    class Template < Chef::Resource::File
      resource_name :template
      actions :create, :delete, :touch, :create_if_missing
      attribute :source, :kind_of => String
      attribute :variables, :kind_of => Hash, :default => {}
      attribute :cookbook, :kind_of => String
      attribute :local, :kind_of => [TrueClass, FalseClass], :default => false

      def content(*_args)
        raise NoMethodError, "undefined method `content' for #{self.class} (#{self})"
      end

      def desired_content
        src = source || "#{::File.basename(path)}.erb"
        cookbook_dir = run_context.cookbook_dir
        cookbook_dir = ::File.join(::File.dirname(cookbook_dir), cookbook) if cookbook
        file = local ? src : ::File.join(cookbook_dir, 'templates', 'default', src)
        unless ::File.exist?(file)
          raise Chef::Exceptions::FileNotFound,
                "Cookbook '#{::File.basename(cookbook_dir)}' does not contain a file at any of these locations:\n  templates/default/#{src}"
        end
        Chef::TemplateContext.new(node, variables).render(::File.read(file), file)
      end
    end

    class Link < Chef::Resource
      resource_name :link
      actions :create, :delete
      default_action :create
      attribute :target_file, :kind_of => String, :name_attribute => true
      attribute :to, :kind_of => String
      attribute :link_type, :kind_of => Symbol, :equal_to => [:symbolic], :default => :symbolic
      attribute :owner, :kind_of => [String, Integer]
      attribute :group, :kind_of => [String, Integer]

      def action_create
        raise ArgumentError, "link #{target_file}: `to` is required" if to.nil?
        p = real(target_file)
        want = to.start_with?('/') ? real(to) : to
        if ::File.symlink?(p)
          return if ::File.readlink(p) == want
          converge_by("unlink existing file at #{target_file}") { ::File.unlink(p) }
        elsif ::File.exist?(p)
          raise Chef::Exceptions::Exec, "link #{target_file}: a file or directory that is not a symlink is there"
        end
        converge_by("create symlink at #{target_file} to #{to}") { ::File.symlink(want, p) }
        descs = apply_attributes(p, owner, group, nil)
        converge_by(descs) unless descs.empty?
      end

      def action_delete
        p = real(target_file)
        return unless ::File.symlink?(p)
        converge_by("delete symlink at #{target_file}") { ::File.unlink(p) }
      end
    end

    class Execute < Chef::Resource
      resource_name :execute
      actions :run
      default_action :run
      attribute :command, :kind_of => [String, Array], :name_attribute => true
      attribute :user, :kind_of => [String, Integer]
      attribute :group, :kind_of => [String, Integer]
      attribute :cwd, :kind_of => String
      attribute :environment, :kind_of => Hash
      attribute :returns, :kind_of => [Integer, Array], :default => 0
      attribute :timeout, :kind_of => [Integer, Float], :default => 3600
      attribute :creates, :kind_of => String
      attribute :umask, :kind_of => [String, Integer]

      def shell_options
        opts = { :returns => returns, :timeout => timeout }
        opts[:user] = user if user
        opts[:group] = group if group
        opts[:cwd] = cwd if cwd
        opts[:environment] = environment if environment
        opts[:umask] = umask if umask
        opts
      end

      def action_run
        return if creates && ::File.exist?(real(creates))
        shown = command.is_a?(Array) ? command.join(' ') : command
        converge_by("execute #{shown}") { shell_out!(command, shell_options) }
      end
    end

    # bash / script: the code goes to a temp file (0600, owned by `user`), run by the interpreter.
    class Bash < Chef::Resource::Execute
      resource_name :bash
      attribute :code, :kind_of => String
      attribute :flags, :kind_of => String, :default => ''
      attribute :interpreter, :kind_of => String, :default => 'bash'

      def command(*args)
        raise NoMethodError, "undefined method `command' for #{self.class} (#{self}): use code" unless args.empty?
        @command
      end

      def action_run
        raise ArgumentError, "#{self}: code is required" if code.nil?
        return if creates && ::File.exist?(real(creates))
        script = Tempfile.new('chef-script', StandIn.path('/tmp'))
        begin
          script.write(StandIn.text(code))
          script.close
          uid = user ? StandIn.uid_of(user) : nil
          raise Chef::Exceptions::UserIDNotFound, "cannot determine user id for '#{user}'" if user && uid.nil?
          ::File.chown(uid, nil, script.path) if uid
          @command = "\"#{interpreter}\" #{flags} \"#{script.path}\"".sub('  ', ' ')
          converge_by("execute \"#{interpreter}\" #{flags} \"#{StandIn.unpath(script.path)}\"".sub('  ', ' ')) do
            shell_out!(@command, shell_options)
          end
        ensure
          script.close!
        end
      end
    end

    class RubyBlock < Chef::Resource
      resource_name :ruby_block
      actions :run, :create
      default_action :run
      attribute :block_name, :kind_of => String, :name_attribute => true
      attribute :block, :kind_of => Proc, :block => true

      # chef-solo stand-in: Kernel#sleep called from a ruby_block returns at once (ruby_block 'sleep 5'
      # waits for the embedded PostgreSQL, which the stand-in's start already waited for).
      def sleep(secs = nil)
        @slept = secs
        secs.to_i
      end

      def action_run
        raise ArgumentError, "#{self}: block is required" if block.nil?
        @slept = nil
        block.call
        converge_by("execute the ruby block #{block_name}#{@slept ? " (stand-in: sleep #{@slept} returned at once)" : ''}")
      end
      alias action_create action_run
    end

    # service: commands given on the resource (the runit definition gives sv commands), otherwise the
    # host's init script /etc/init.d/<name> (mapped under the node root). enable/disable (boot links)
    # are not reproduced.
    class Service < Chef::Resource
      resource_name :service
      actions :start, :stop, :restart, :reload, :enable, :disable
      default_action :nothing
      attribute :service_name, :kind_of => String, :name_attribute => true
      attribute :start_command, :kind_of => [String, FalseClass]
      attribute :stop_command, :kind_of => [String, FalseClass]
      attribute :restart_command, :kind_of => [String, FalseClass]
      attribute :status_command, :kind_of => [String, FalseClass]
      attribute :reload_command, :kind_of => [String, FalseClass]

      def init_command(what)
        "/etc/init.d/#{service_name} #{what}"
      end

      def running?
        cmd = status_command || (supports[:status] ? init_command('status') : nil)
        raise NotImplementedError, "chef-solo stand-in: #{self} has no status command (process-table lookup is not reproduced)" unless cmd
        shell_out(cmd).exitstatus.zero?
      end

      def action_start
        return if running?
        converge_by("start service #{self}") { shell_out!(start_command || init_command('start')) }
      end

      def action_stop
        return unless running?
        converge_by("stop service #{self}") { shell_out!(stop_command || init_command('stop')) }
      end

      def action_restart
        converge_by("restart service #{self}") do
          if restart_command || supports[:restart]
            shell_out!(restart_command || init_command('restart'))
          else
            shell_out!(stop_command || init_command('stop')) if running?
            shell_out!(start_command || init_command('start'))
          end
        end
      end

      def action_reload
        converge_by("reload service #{self}") { shell_out!(reload_command || init_command('reload')) }
      end

      def action_enable
        raise NotImplementedError, "chef-solo stand-in: #{self} action :enable (boot links) is not reproduced"
      end

      def action_disable
        raise NotImplementedError, "chef-solo stand-in: #{self} action :disable (boot links) is not reproduced"
      end
    end
  end
end
