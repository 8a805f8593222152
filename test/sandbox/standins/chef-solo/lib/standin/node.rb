# chef-ha sandbox STAND-IN (part of the chef-solo stand-in, ../../chef-solo.rb): the node and its
# attributes, as Chef Server 11's chef-solo run computes them (shared/reference/chef-server-11.md §0, §1c):
#
#   1. the cookbook's attributes/default.rb (`default[...]`), evaluated with a stand-in of ohai;
#   2. ChefServer.from_file of the sandbox host file <root>/etc/chef-standin-host.rb (sandbox only: the
#      ports of this stand-in host), then of /etc/chef-server/chef-server.rb (Mixlib::Config style:
#      `postgresql['port'] = 5433`); an unknown top-level name fails as in Mixlib::Config;
#   3. set_default_listen_interface (11.1: postgresql['listen_address'] ||= '0.0.0.0');
#   4. generate_secrets: the values of chef-server-secrets.json win (the TypeScript part of the
#      reconfigure stand-in has already read or generated that file);
#   5. node.consume_attributes(generate_hash): normal attributes over the defaults;
#   6. bootstrap.enable = false when /var/opt/chef-server/bootstrapped exists (default.rb).
require 'json'
require_relative 'root'

class Chef
  module Exceptions
    class ImmutableAttributeModification < RuntimeError; end
    class ValidationFailed < ArgumentError; end
    class RecipeNotFound < ArgumentError; end
    class ResourceNotFound < ArgumentError; end
    class FileNotFound < RuntimeError; end
    class EnclosingDirectoryDoesNotExist < ArgumentError; end
    class UserIDNotFound < ArgumentError; end
    class Exec < RuntimeError; end
  end
end

module StandIn
  # Hash with string keys that also accepts symbols (Chef's Mash).
  class Mash < Hash
    def self.from(h)
      m = new
      h.each { |k, v| m[k] = v.is_a?(Hash) ? from(v) : v }
      m
    end

    def [](k)
      super(k.to_s)
    end

    def []=(k, v)
      super(k.to_s, v)
    end

    def key?(k)
      super(k.to_s)
    end
    alias has_key? key?
    alias include? key?

    def fetch(k, *rest, &blk)
      super(k.to_s, *rest, &blk)
    end

    def delete(k)
      super(k.to_s)
    end
  end

  # Auto-vivifying Mash for `default['chef_server']['postgresql']['x'] = ...` in attribute files.
  class VividMash < Mash
    def [](k)
      key?(k) ? super : (self[k] = VividMash.new)
    end
  end

  def self.deep_merge(base, over)
    out = Mash.new
    base.each { |k, v| out[k] = v }
    over.each do |k, v|
      out[k] = out[k].is_a?(Hash) && v.is_a?(Hash) ? deep_merge(out[k], v) : v
    end
    out
  end

  def self.plain(v)
    case v
    when Hash then v.each_with_object({}) { |(k, x), h| h[k.to_s] = plain(x) }
    when Array then v.map { |x| plain(x) }
    else v
    end
  end

  # Read-only view of merged attributes (Chef 11 hands recipes an immutable merged view).
  class Attrs
    include Enumerable

    def initialize(hash, path)
      @hash = hash
      @path = path
    end

    def [](k)
      v = @hash[k.to_s]
      v.is_a?(Hash) ? Attrs.new(v, "#{@path}['#{k}']") : v
    end

    def []=(k, _v)
      raise Chef::Exceptions::ImmutableAttributeModification,
            "Node attributes are read-only when you do not specify which precedence level to set (#{@path}['#{k}'])"
    end

    def key?(k)
      @hash.key?(k.to_s)
    end
    alias has_key? key?
    alias include? key?

    def fetch(k, *rest, &blk)
      key?(k) ? self[k] : @hash.fetch(k.to_s, *rest, &blk)
    end

    def each(&blk)
      @hash.each { |k, v| blk.call(k, v.is_a?(Hash) ? Attrs.new(v, "#{@path}['#{k}']") : v) }
    end

    def keys
      @hash.keys
    end

    def to_hash
      StandIn.plain(@hash)
    end
    alias to_h to_hash

    def inspect
      to_hash.inspect
    end
  end

  # Stand-in of the ohai data the chef-server attributes read. memory.total is fixed small (128 MB) so
  # that the attribute formulas give shared_buffers = 32MB and effective_cache_size = 64MB, whatever
  # this machine has (several embedded clusters share it).
  OHAI = {
    'kernel' => { 'machine' => 'x86_64', 'name' => 'Linux' },
    'memory' => { 'total' => '131072kB' },
    'platform' => 'debian',
    'platform_family' => 'debian',
    'fqdn' => 'chef-standin.sandbox',
    'hostname' => 'chef-standin'
  }.freeze

  # Evaluation context of an attributes file.
  class AttributeFile
    def initialize(node)
      @node = node
    end

    attr_reader :node

    def default
      @node.default_attrs
    end

    def set
      @node.normal_attrs
    end
    alias normal set

    def kernel
      @node['kernel']
    end

    def method_missing(sym, *args, &blk)
      return @node[sym.to_s] if args.empty? && blk.nil? && OHAI.key?(sym.to_s)
      super
    end

    def respond_to_missing?(sym, priv = false)
      OHAI.key?(sym.to_s) || super
    end
  end

  # Stand-in of the cookbook library ChefServer (libraries/chef_server.rb), a Mixlib::Config. Keys of
  # chef-server.rb map to node['chef_server'][...] with "_" turned into "-" (chef_server_webui ->
  # chef-server-webui), as generate_hash does.
  class ChefServerConfig
    SERVICES = %w[bookshelf bootstrap chef_expander chef_pedant chef_server_webui chef_solr erchef
                  estatsd lb nginx postgresql rabbitmq user].freeze

    def initialize
      @services = {}
      SERVICES.each { |s| @services[s] = Mash.new }
      @settings = {}
    end

    SERVICES.each do |s|
      define_method(s) { @services[s] }
    end

    def [](key)
      @services[key.to_s.tr('-', '_')] || @settings[key.to_s]
    end

    def from_file(path)
      instance_eval(File.read(StandIn.path(path)), StandIn.path(path), 1)
    end

    # top-level settings (`api_fqdn "x"`, `notification_email = ...` inside the file is a local)
    def method_missing(sym, *args, &blk)
      name = sym.to_s
      if name.end_with?('=') && args.size == 1
        @settings[name.chomp('=')] = args.first
      elsif args.size == 1 && blk.nil?
        @settings[name] = args.first
      elsif args.empty? && blk.nil?
        @settings[name]
      else
        super
      end
    end

    def respond_to_missing?(_sym, _priv = false)
      true
    end

    def generate_hash
      out = Mash.new
      @services.each { |s, h| out[s.tr('_', '-')] = h unless h.empty? }
      @settings.each { |k, v| out[k] = v }
      out
    end
  end

  class Node
    attr_reader :default_attrs, :normal_attrs

    def initialize
      @default_attrs = VividMash.new
      @normal_attrs = VividMash.new
      @automatic = Mash.from(OHAI)
    end

    def merged
      StandIn.deep_merge(StandIn.deep_merge(@automatic, @default_attrs), @normal_attrs)
    end

    def [](k)
      v = merged[k.to_s]
      v.is_a?(Hash) ? Attrs.new(v, "node['#{k}']") : v
    end

    def []=(k, _v)
      raise Chef::Exceptions::ImmutableAttributeModification, "node['#{k}'] is read-only; use node.set"
    end

    def set
      @normal_attrs
    end
    alias normal set

    def default
      @default_attrs
    end

    def consume_attributes(hash)
      @normal_attrs = VividMash.from(StandIn.deep_merge(@normal_attrs, hash))
    end

    def name
      OHAI['fqdn']
    end

    def run_list
      ['recipe[chef-server]']
    end

    def to_s
      "node[#{name}]"
    end

    # Computes the chef-server node attributes as described at the top of this file.
    def self.for_chef_server(cookbook_dir)
      node = new
      attrs_file = File.join(cookbook_dir, 'attributes', 'default.rb')
      AttributeFile.new(node).instance_eval(File.read(StandIn.path(attrs_file)), attrs_file, 1)
      config = ChefServerConfig.new
      host_file = "#{StandIn.root}/etc/chef-standin-host.rb"
      config.from_file(host_file) if File.exist?(host_file)
      StandIn.default_pg_port = (config.postgresql['port'] || 5432).to_s
      config.from_file('/etc/chef-server/chef-server.rb') if File.exist?('/etc/chef-server/chef-server.rb')
      config.postgresql['listen_address'] ||= '0.0.0.0'
      secrets_file = '/etc/chef-server/chef-server-secrets.json'
      if File.exist?(secrets_file)
        JSON.parse(File.read(secrets_file)).each do |svc, values|
          values.each { |k, v| config[svc][k] = v }
        end
      end
      node.consume_attributes('chef_server' => config.generate_hash)
      node.set['chef_server']['bootstrap']['enable'] = false if File.exist?('/var/opt/chef-server/bootstrapped')
      node
    end
  end
end
