# chef-ha sandbox STAND-IN (part of the chef-solo stand-in, ../../chef-solo.rb): the parts of Chef 11
# that run a recipe. Compile phase: the recipe file is instance_eval'd on a Chef::Recipe, each resource
# call builds a resource whose block is instance_eval'd on it (so a recipe's own `def` methods are NOT
# visible inside resource blocks, as in Chef 11), a repeated name clones the prior resource (CHEF-3694).
# Converge phase: resources run in order; guards (only_if before not_if, a String runs as a command
# with only the guard's own options, a block is called), retries, notifications (:immediately /
# :delayed) and the doc formatter's lines. An unknown resource, attribute or action raises, as in Chef.
require 'etc'
require 'fileutils'
require_relative 'root'
require_relative 'node'
require_relative '../mixlib/shellout'

module StandIn
  # chef-solo's doc formatter, as far as the tests and operators read it.
  module Out
    def self.line(text = '')
      $stdout.puts(text)
      $stdout.flush
    end

    def self.log(level, msg)
      line("[#{Time.now.strftime('%Y-%m-%dT%H:%M:%S%:z')}] #{level}: #{msg}")
    end
  end

  # A resource failed while converging: reported as "Error executing action `x` on resource 'y'".
  class ResourceFailed < StandardError
    attr_reader :resource, :action, :cause_error

    def initialize(resource, action, error)
      @resource = resource
      @action = action
      @cause_error = error
      super("#{resource} had an error: #{error.class}: #{error.message}")
    end
  end
end

class Chef
  class Log
    def self.warn(msg)
      StandIn::Out.log('WARN', msg)
    end

    def self.error(msg)
      StandIn::Out.log('ERROR', msg)
    end

    def self.info(_msg); end

    def self.debug(_msg); end
  end

  module Mixin
    module ShellOut
      def shell_out(*args)
        Mixlib::ShellOut.new(*args).run_command
      end

      def shell_out!(*args)
        cmd = shell_out(*args)
        cmd.error!
        cmd
      end
    end
  end

  # only_if / not_if
  class Guard
    include Chef::Mixin::ShellOut
    GUARD_OPTIONS = %i[user group cwd environment timeout returns].freeze

    attr_reader :positivity

    def initialize(positivity, command, opts, block)
      raise ArgumentError, "#{positivity} requires either a command or a block" if command.nil? && block.nil?
      unless command.nil? || command.is_a?(String)
        raise ArgumentError, "Invalid #{positivity} command: #{command.inspect} (#{command.class})"
      end
      bad = opts.keys.map(&:to_sym) - GUARD_OPTIONS
      raise ArgumentError, "#{positivity}: unknown option(s) #{bad.inspect}" unless bad.empty?
      @positivity = positivity
      @command = command
      @opts = opts
      @block = block
    end

    def continue?
      result = @command ? shell_out(@command, @opts).exitstatus.zero? : !!@block.call
      @positivity == :only_if ? result : !result
    end
  end

  class Resource
    NOT_PASSED = Object.new.freeze
    COMMON = %i[action not_if only_if notifies subscribes retries retry_delay ignore_failure supports
                sensitive].freeze

    class << self
      attr_reader :dsl_name, :allowed_actions, :default_act, :attributes

      def resource_name(name)
        @dsl_name = name
        StandIn::RESOURCES[name] = self
      end

      def actions(*names)
        @allowed_actions = [:nothing] + names
      end

      def default_action(name)
        @default_act = name
      end

      # attribute :command, :kind_of => [String, Array], :name_attribute => true, :default => 0
      def attribute(name, opts = {})
        (@attributes ||= {})[name] = opts
        define_method(name) do |*args, &blk|
          if args.empty? && blk.nil?
            ivar = "@#{name}"
            return instance_variable_get(ivar) if instance_variable_defined?(ivar)
            return @name if opts[:name_attribute]
            return opts[:default]
          end
          raise ArgumentError, "#{name} takes one argument" if args.size > 1
          value = blk && opts[:block] ? blk : args.first
          validate!(name, value, opts)
          instance_variable_set("@#{name}", value)
        end
      end

      def inherited(sub)
        super
        sub.instance_variable_set(:@attributes, (@attributes || {}).dup)
        sub.instance_variable_set(:@allowed_actions, @allowed_actions)
        sub.instance_variable_set(:@default_act, @default_act)
      end
    end

    attr_reader :name, :run_context, :only_ifs, :not_ifs, :notifications, :changes
    attr_accessor :source_line, :standin_note, :recipe

    def initialize(name, run_context)
      @name = name
      @run_context = run_context
      @action = [self.class.default_act]
      @only_ifs = []
      @not_ifs = []
      @notifications = []
      @retries = 0
      @retry_delay = 2
      @ignore_failure = false
      @changes = []
    end

    def node
      run_context.node
    end

    def resource_name
      self.class.dsl_name
    end

    def to_s
      "#{resource_name}[#{@name}]"
    end

    def inspect
      to_s
    end

    def action(arg = NOT_PASSED)
      return @action if arg.equal?(NOT_PASSED)
      acts = Array(arg).map { |a| a.is_a?(String) ? a.to_sym : a }
      acts.each do |a|
        next if self.class.allowed_actions.include?(a)
        raise Chef::Exceptions::ValidationFailed,
              "Option action must be equal to one of: #{self.class.allowed_actions.join(', ')}!  You passed #{a.inspect}."
      end
      @action = acts
    end

    def not_if(command = nil, opts = {}, &block)
      @not_ifs << Chef::Guard.new(:not_if, command, opts, block)
    end

    def only_if(command = nil, opts = {}, &block)
      @only_ifs << Chef::Guard.new(:only_if, command, opts, block)
    end

    def notifies(action, target, timing = :delayed)
      timing = timing.to_sym
      unless %i[delayed immediate immediately].include?(timing)
        raise ArgumentError, "invalid timing: #{timing} for notifies(#{action}, #{target.inspect}) resource #{self}"
      end
      target = target.to_s if target.is_a?(Chef::Resource)
      raise ArgumentError, "notifies: target must be a String like 'service[postgresql]'" unless target.is_a?(String)
      @notifications << [action.to_sym, target, timing == :delayed ? :delayed : :immediate]
    end

    def subscribes(action, target, timing = :delayed)
      target = target.to_s if target.is_a?(Chef::Resource)
      run_context.subscriptions << [target, action.to_sym, to_s, timing.to_sym == :delayed ? :delayed : :immediate]
    end

    def retries(n = NOT_PASSED)
      n.equal?(NOT_PASSED) ? @retries : (@retries = Integer(n))
    end

    def retry_delay(n = NOT_PASSED)
      n.equal?(NOT_PASSED) ? @retry_delay : (@retry_delay = n)
    end

    def ignore_failure(v = NOT_PASSED)
      v.equal?(NOT_PASSED) ? @ignore_failure : (@ignore_failure = v)
    end

    def sensitive(v = NOT_PASSED)
      v.equal?(NOT_PASSED) ? @sensitive : (@sensitive = v)
    end

    def supports(v = NOT_PASSED)
      v.equal?(NOT_PASSED) ? (@supports || {}) : (@supports = v)
    end

    # Chef 11: an unknown method inside a resource block is an error (the enclosing provider, the only
    # other place Chef looks, does not exist in a recipe).
    def method_missing(sym, *_args, &_blk)
      raise NoMethodError, "undefined method `#{sym}' for #{self.class} (#{self})"
    end

    def respond_to_missing?(_sym, _priv = false)
      false
    end

    # Called once the block has been evaluated (definitions that declare more resources use it).
    def after_created; end

    # --- provider side --------------------------------------------------------------------------
    include Chef::Mixin::ShellOut

    def converge_by(descriptions)
      @changes.concat(Array(descriptions))
      yield if block_given?
    end

    def updated?
      !@changes.empty?
    end

    def run(action)
      @changes = []
      @standin_note = nil
      send("action_#{action}")
    end

    def validate!(name, value, opts)
      if opts[:kind_of] && !value.nil?
        kinds = Array(opts[:kind_of])
        unless kinds.any? { |k| value.is_a?(k) }
          raise Chef::Exceptions::ValidationFailed,
                "Option #{name} must be a kind of #{kinds.inspect}!  You passed #{value.inspect}."
        end
      end
      if opts[:equal_to] && !opts[:equal_to].include?(value)
        raise Chef::Exceptions::ValidationFailed,
              "Option #{name} must be equal to one of: #{opts[:equal_to].map(&:inspect).join(', ')}!  You passed #{value.inspect}."
      end
      true
    end

    # helpers for file-like resources
    def real(path)
      StandIn.path(path)
    end

    def mode_int(mode)
      return nil if mode.nil?
      mode.is_a?(String) ? mode.oct : mode
    end

    def fmt_mode(m)
      format('%04o', m & 0o7777)
    end

    # owner / group / mode of an existing path; returns the change descriptions.
    def apply_attributes(path, owner, group, mode)
      st = ::File.lstat(path)
      descs = []
      if owner
        uid = StandIn.uid_of(owner)
        raise Chef::Exceptions::UserIDNotFound, "cannot determine user id for '#{owner}', does the user exist on this system?" if uid.nil?
        if st.uid != uid
          descs << "change owner from '#{StandIn.user_name(st.uid)}' to '#{owner}'"
          ::File.lchown(uid, nil, path)
        end
      end
      if group
        gid = StandIn.gid_of(group)
        raise ArgumentError, "cannot determine group id for '#{group}', does the group exist on this system?" if gid.nil?
        if st.gid != gid
          descs << "change group from '#{StandIn.group_name(st.gid)}' to '#{group}'"
          ::File.lchown(nil, gid, path)
        end
      end
      want = mode_int(mode)
      if want && !st.symlink? && (st.mode & 0o7777) != want
        descs << "change mode from '#{fmt_mode(st.mode)}' to '#{fmt_mode(want)}'"
        ::File.chmod(want, path)
      end
      descs
    end
  end

  class Recipe
    attr_reader :cookbook_name, :recipe_name, :run_context

    def initialize(cookbook_name, recipe_name, run_context)
      @cookbook_name = cookbook_name
      @recipe_name = recipe_name
      @run_context = run_context
    end

    def node
      run_context.node
    end

    def from_file(path)
      instance_eval(File.read(StandIn.path(path)), path, 1)
    end

    def include_recipe(*names)
      names.flatten.each { |n| run_context.include_recipe(n) }
    end

    def resources(query)
      raise ArgumentError, 'resources() takes a Hash like :service => "postgresql"' unless query.is_a?(Hash) && query.size == 1
      type, name = query.first
      run_context.lookup!("#{type}[#{name}]")
    end

    def method_missing(sym, *args, &block)
      klass = StandIn::RESOURCES[sym]
      raise NoMethodError, "No resource or method named `#{sym}' for `Chef::Recipe \"#{@recipe_name}\"'" if klass.nil?
      if args.size != 1
        raise ArgumentError, "#{sym} takes exactly one name argument (#{args.size} given)"
      end
      run_context.declare(klass, args.first, block, self)
    end

    def respond_to_missing?(sym, priv = false)
      StandIn::RESOURCES.key?(sym) || super
    end

    def to_s
      "Chef::Recipe \"#{@recipe_name}\""
    end
  end

  # Template rendering context: the template's variables as @ivars, and node.
  class TemplateContext
    def initialize(node, variables)
      @node = node
      variables.each { |k, v| instance_variable_set("@#{k}", v) }
    end

    attr_reader :node

    # chef-solo stand-in helper for the fixture templates: a real-layout path as this machine has it.
    def standin_path(path)
      StandIn.path(path)
    end

    def render(source, path)
      erb = ERB.new(source, trim_mode: '-')
      erb.filename = path
      erb.result(binding)
    end
  end
end

module StandIn
  RESOURCES = {}

  class RunContext
    attr_reader :node, :cookbook_dir, :collection, :subscriptions, :loaded_recipes
    attr_accessor :updated_count

    def initialize(node, cookbook_dir)
      @node = node
      @cookbook_dir = cookbook_dir
      @collection = []
      @by_name = {}
      @subscriptions = []
      @loaded_recipes = []
      @updated_count = 0
      @delayed = []
    end

    def load_libraries
      dir = File.join(@cookbook_dir, 'libraries')
      return unless File.directory?(dir)
      Dir.children(StandIn.path(dir)).sort.select { |f| f.end_with?('.rb') }.each do |f|
        path = File.join(dir, f)
        Object.class_eval(File.read(StandIn.path(path)), path, 1)
      end
    end

    def include_recipe(spec)
      cookbook, recipe = spec.include?('::') ? spec.split('::', 2) : [spec, 'default']
      return if @loaded_recipes.include?("#{cookbook}::#{recipe}")
      # chef-solo stand-in: the runit cookbook is carried out by the runit_service resource itself
      return @loaded_recipes << 'runit::default' if cookbook == 'runit'
      path = File.join(File.dirname(@cookbook_dir), cookbook, 'recipes', "#{recipe}.rb")
      unless cookbook == File.basename(@cookbook_dir) && File.exist?(path)
        raise Chef::Exceptions::RecipeNotFound, "could not find recipe #{recipe} for cookbook #{cookbook}"
      end
      @loaded_recipes << "#{cookbook}::#{recipe}"
      outer = @current_file
      @current_file = path
      begin
        Chef::Recipe.new(cookbook, recipe, self).from_file(path)
      ensure
        @current_file = outer
      end
    end

    def declare(klass, name, block, recipe)
      resource = klass.new(name, self)
      loc = caller_locations.find { |l| l.path == @current_file }
      resource.source_line = loc && "#{loc.path}:#{loc.lineno}"
      prior = @by_name[resource.to_s]
      if prior
        Chef::Log.warn("Cloning resource attributes for #{resource} from prior resource (CHEF-3694)")
        Chef::Log.warn("Previous #{prior}: #{prior.source_line}") if prior.source_line
        Chef::Log.warn("Current  #{resource}: #{resource.source_line}") if resource.source_line
        prior.instance_variables.each do |iv|
          next if %i[@source_line @action @not_ifs @only_ifs].include?(iv)
          value = prior.instance_variable_get(iv)
          resource.instance_variable_set(iv, value.is_a?(Array) || value.is_a?(Hash) ? value.dup : value)
        end
      end
      resource.recipe = recipe
      resource.instance_eval(&block) if block
      add(resource)
      resource.after_created
      resource
    end

    def add(resource)
      @collection << resource
      @by_name[resource.to_s] = resource
    end

    def lookup!(key)
      @by_name[key] or raise Chef::Exceptions::ResourceNotFound, "Cannot find a resource matching #{key} (did you define it first?)"
    end

    # Chef resolves notification targets after the compile phase.
    def resolve_notifications
      @collection.each do |r|
        r.notifications.each do |(_action, target, _timing)|
          next if @by_name.key?(target)
          raise Chef::Exceptions::ResourceNotFound,
                "resource #{r} is configured to notify resource #{target} with action #{_action}, but #{target} cannot be found in the resource collection. #{r} is defined in #{r.source_line}"
        end
      end
      @subscriptions.each do |(target, action, subscriber, timing)|
        lookup!(target).notifications << [action, subscriber, timing]
      end
    end

    def converge
      resolve_notifications
      @collection.each do |r|
        r.action.each { |a| run_action(r, a) }
      end
      until @delayed.empty?
        action, target = @delayed.shift
        run_action(lookup!(target), action, true)
      end
    end

    def queue_delayed(action, target)
      @delayed << [action, target] unless @delayed.include?([action, target])
    end

    def run_action(resource, action, notified = false)
      recipe = resource.recipe
      label = recipe && "#{recipe.cookbook_name}::#{recipe.recipe_name}"
      if label && label != @last_recipe
        Out.line("Recipe: #{label}")
        @last_recipe = label
      end
      head = "  * #{resource} action #{action}"
      if action == :nothing && !notified
        return Out.line("#{head} (skipped due to action :nothing)")
      end
      guard = (resource.only_ifs + resource.not_ifs).find { |g| !g.continue? }
      return Out.line("#{head} (skipped due to #{guard.positivity})") if guard
      attempts = 0
      begin
        resource.run(action)
      rescue StandardError, ScriptError => e
        if attempts < resource.retries
          attempts += 1
          Chef::Log.warn("Retrying #{resource} action #{action}, retry #{attempts}/#{resource.retries}")
          sleep(resource.retry_delay.to_f)
          retry
        end
        if resource.ignore_failure
          Out.line(head)
          Chef::Log.error("#{resource} (#{resource.source_line}) had an error: #{e.class}: #{e.message}; ignore_failure is set, continuing")
          return
        end
        Out.line(head)
        raise ResourceFailed.new(resource, action, e)
      end
      if resource.standin_note
        Out.line("#{head} (#{resource.standin_note})")
      elsif resource.updated?
        Out.line(head)
        resource.changes.each { |c| Out.line("    - #{c}") }
      else
        Out.line("#{head} (up to date)")
      end
      return unless resource.updated?
      @counted ||= {}
      unless @counted[resource.object_id]
        @counted[resource.object_id] = true
        @updated_count += 1
      end
      resource.notifications.each do |(act, target, timing)|
        if timing == :immediate
          run_action(lookup!(target), act, true)
        else
          @delayed << [act, target] unless @delayed.include?([act, target])
        end
      end
    end
  end
end
