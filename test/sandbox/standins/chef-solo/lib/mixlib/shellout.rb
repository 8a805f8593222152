# chef-ha sandbox STAND-IN of mixlib-shellout (the command runner of Chef 11 and its cookbooks), part
# of the chef-solo stand-in (../../chef-solo.rb). Same interface as far as the recipes and the
# chef-server cookbook's libraries use it: new(command, options), run_command, stdout, stderr,
# exitstatus, error?, error!. Like mixlib-shellout, a String command runs through /bin/sh only when
# it holds shell metacharacters (otherwise it is split on spaces and exec'd, so a missing program
# raises Errno::ENOENT), LC_ALL=C is set, and `user` runs it as that account. Stand-in parts: the
# real-layout paths in the command and cwd are mapped under the node root, and the OS account
# opscode-pgsql is played by postgres (StandIn.os_user).
require 'etc'
require 'open3'
require 'timeout'
require_relative '../standin/root'

module Mixlib
  class ShellOut
    class Error < RuntimeError; end
    class ShellCommandFailed < Error; end
    class CommandTimeout < Error; end
    class InvalidCommandOption < Error; end

    SHELL_META = /[*?{}\[\]<>()~&|\\$;'`"\n#=%]/.freeze
    OPTIONS = %i[user group cwd environment env timeout returns input live_stream umask log_level
                 log_tag login].freeze

    attr_reader :command, :user, :group, :cwd, :environment, :timeout, :valid_exit_codes, :input,
                :stdout, :stderr, :status, :umask
    attr_accessor :live_stream

    def initialize(*args)
      opts = args.last.is_a?(Hash) ? args.pop : {}
      @command = args.size == 1 ? args.first : args
      @user = nil
      @group = nil
      @cwd = nil
      @environment = { 'LC_ALL' => 'C' }
      @timeout = 600
      @valid_exit_codes = [0]
      @input = nil
      @umask = nil
      opts.each do |k, v|
        key = k.to_sym
        raise InvalidCommandOption, "option '#{k.inspect}' is not a valid option for Mixlib::ShellOut" unless OPTIONS.include?(key)
        case key
        when :user then @user = v
        when :group then @group = v
        when :cwd then @cwd = v
        when :environment, :env then (v || {}).each { |ek, ev| ev.nil? ? @environment.delete(ek.to_s) : @environment[ek.to_s] = ev.to_s }
        when :timeout then @timeout = v
        when :returns then @valid_exit_codes = Array(v)
        when :input then @input = v
        when :live_stream then @live_stream = v
        when :umask then @umask = v.is_a?(String) ? v.oct : v
        end
      end
      @stdout = ''
      @stderr = ''
    end

    def exitstatus
      @status && @status.exitstatus
    end

    # The words of the command (mapped), as mixlib-shellout's exec would see them.
    def words
      w =
        if @command.is_a?(Array)
          @command.map { |x| StandIn.text(x.to_s) }
        else
          cmd = StandIn.text(@command.to_s)
          cmd =~ SHELL_META ? ['/bin/sh', '-c', cmd] : cmd.split(' ')
        end
      StandIn.account_words(@user, w)
    end

    # The argv this machine runs: the words, through runuser when `user` is set.
    def argv
      words = self.words
      os_user = StandIn.os_user(@user)
      if os_user && os_user != 'root'
        pre = ['runuser', '-u', os_user]
        pre += ['-g', StandIn.os_user(@group)] if @group
        pre + ['--'] + words
      else
        words
      end
    end

    def run_command
      env = @environment.merge(StandIn.account_env(@user))
      opts = {}
      opts[:chdir] = StandIn.path(@cwd) if @cwd
      opts[:umask] = @umask if @umask
      Open3.popen3(env, *argv, opts) do |stdin, out, err, wait|
        stdin.write(@input) if @input
        stdin.close
        readers = [Thread.new { out.read }, Thread.new { err.read }]
        unless wait.join(@timeout)
          begin
            Process.kill('KILL', wait.pid)
          rescue Errno::ESRCH
            nil
          end
          wait.join
          raise CommandTimeout, "command timed out after #{@timeout}s:\n#{format_for_exception}"
        end
        @stdout = readers[0].value.to_s
        @stderr = readers[1].value.to_s
        @status = wait.value
      end
      StandIn.after_account_command(@user, words, @status)
      @live_stream << @stdout if @live_stream
      self
    end

    def error?
      !@valid_exit_codes.include?(exitstatus)
    end

    def error!
      return unless error?
      raise ShellCommandFailed,
            "Expected process to exit with #{@valid_exit_codes.inspect}, but received '#{exitstatus}'\n" +
            format_for_exception
    end

    def format_for_exception
      shown = @command.is_a?(Array) ? @command.join(' ') : @command.to_s
      "---- Begin output of #{shown} ----\nSTDOUT: #{@stdout.strip}\nSTDERR: #{@stderr.strip}\n" \
        "---- End output of #{shown} ----\nRan #{shown} returned #{exitstatus}"
    end
  end
end
