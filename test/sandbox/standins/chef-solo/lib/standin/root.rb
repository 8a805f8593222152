# chef-ha sandbox STAND-IN (part of the chef-solo stand-in, see ../../chef-solo.rb): the node root.
#
# A sandbox node's root directory stands in for that host's "/". Recipes, attributes and resource names
# keep the real Chef Server 11 paths (/opt/chef-server, /var/opt/chef-server, ...); this module maps
# them under the node root wherever they touch the machine: file and directory resources, command
# strings, guards, and the File/Dir queries a recipe or library makes. It also maps the OS account
# opscode-pgsql, which the sandbox does not create, to postgres (docs/sandbox.md).

module StandIn
  # Absolute paths of the real layout that live under the node root in the sandbox. Everything else
  # (/usr/lib/postgresql/15/bin, /bin/sh, ...) is the real machine's.
  MAPPED_PREFIXES = %w[
    /var/opt/chef-server /var/log/chef-server /opt/chef-server /etc/chef-server
    /etc/sysctl.conf /etc/sysctl.d /etc/init.d /sbin/sysctl /tmp
  ].freeze

  # OS accounts of a Chef Server 11 host that the sandbox plays with another account.
  ACCOUNTS = { 'opscode-pgsql' => 'postgres' }.freeze

  class << self
    # the node root ("/" of the stand-in host) and the sandbox directory (paths under either are real)
    attr_accessor :root, :sandbox
    # stand-in of the embedded PostgreSQL build's compiled-in default port (5432): the host file's port
    attr_accessor :default_pg_port

    # A real-layout path → the path on this machine.
    def path(p)
      s = p.to_s
      return s unless s.start_with?('/')
      return s if already_real?(s)
      prefix = MAPPED_PREFIXES.find { |m| s == m || s.start_with?("#{m}/") }
      prefix ? root + s : s
    end

    # A path on this machine → how the recipe would see it.
    def unpath(p)
      s = p.to_s
      s.start_with?("#{root}/") ? s[root.length..-1] : s
    end

    # Every real-layout absolute path inside a command string, mapped. Relative paths stay relative
    # (the 11.1.7 recipe's `opt/chef-server/bin/chef-server-ctl` only resolves when the current
    # directory is the node root, as on a real host only from "/").
    def text(t)
      s = t.to_s.dup
      guards = [sandbox, root].compact.reject(&:empty?).sort_by { |g| -g.length }
      guards.each_with_index { |g, i| s = s.gsub(g, "\u0001#{i}\u0001") }
      alternation = MAPPED_PREFIXES.sort_by { |m| -m.length }.map { |m| Regexp.escape(m) }.join('|')
      s = s.gsub(%r{(?<![\w./\-\u0001])(#{alternation})(?=[/\s'"`;:|&)(<>,]|\z)}) { root + Regexp.last_match(1) }
      guards.each_with_index { |g, i| s = s.gsub("\u0001#{i}\u0001", g) }
      s
    end

    def already_real?(s)
      [root, sandbox].compact.reject(&:empty?).any? { |g| s == g || s.start_with?("#{g}/") }
    end

    # The OS account that runs what the recipe runs as `user`.
    def os_user(user)
      return nil if user.nil?
      u = user.to_s
      ACCOUNTS.fetch(u, u)
    end

    # Environment that makes a mapped account look like itself to libpq (its default role name is
    # the OS account's name).
    def account_env(user)
      ACCOUNTS.key?(user.to_s) ? { 'PGUSER' => user.to_s } : {}
    end

    def mapped_account?(user)
      ACCOUNTS.key?(user.to_s)
    end

    # initdb names the new cluster's superuser after the OS account that runs it. Run by the account
    # that plays opscode-pgsql, it gets `-U opscode-pgsql`, and afterwards the new cluster's
    # pg_ident.conf gets the peer map chef_standin (postgres -> opscode-pgsql) that the stand-in's
    # pg_hba.conf template names.
    def initdb_index(words)
      words.index { |w| File.basename(w) == 'initdb' }
    end

    def account_words(user, words)
      return words unless mapped_account?(user) && initdb_index(words)
      words + ['-U', user.to_s]
    end

    def after_account_command(user, words, status)
      return unless status && status.success? && mapped_account?(user) && initdb_index(words)
      d = words.index('-D')
      data_dir = d ? words[d + 1] : words.find { |w| w.start_with?('--pgdata=') }.to_s.sub('--pgdata=', '')
      return if data_dir.nil? || data_dir.empty?
      File.open(File.join(data_dir, 'pg_ident.conf'), 'a') do |f|
        f.puts('# chef-ha sandbox stand-in: OS user postgres plays opscode-pgsql (see pg_hba.conf)')
        f.puts("chef_standin  #{os_user(user)}  #{user}")
        f.puts("chef_standin  #{user}  #{user}")
      end
    end

    # uid/gid of an account named in a recipe (mapped), or nil when it does not exist.
    def uid_of(user)
      return user if user.is_a?(Integer)
      Etc.getpwnam(os_user(user)).uid
    rescue ArgumentError
      nil
    end

    def gid_of(group)
      return group if group.is_a?(Integer)
      Etc.getgrnam(os_user(group)).gid
    rescue ArgumentError
      nil
    end

    # How a recipe's account name is shown (the recipe's own name when it is the mapped one).
    def user_name(uid)
      name = Etc.getpwuid(uid).name
      ACCOUNTS.key(name) || name
    rescue ArgumentError
      uid.to_s
    end

    def group_name(gid)
      name = Etc.getgrgid(gid).name
      ACCOUNTS.key(name) || name
    rescue ArgumentError
      gid.to_s
    end
  end

  # The File/Dir queries a recipe or a cookbook library makes, with real-layout paths mapped.
  module FileQueries
    %i[exist? exists? directory? file? symlink? readable? executable? size? zero? pipe? socket?
       readlink read readlines lstat stat mtime].each do |m|
      define_method(m) { |p, *rest, &blk| super(StandIn.path(p), *rest, &blk) }
    end
  end

  module DirQueries
    def glob(pattern, *rest, &blk)
      found = super(pattern.is_a?(Array) ? pattern.map { |p| StandIn.path(p) } : StandIn.path(pattern), *rest)
      found = found.map { |f| StandIn.unpath(f) }
      blk ? found.each(&blk) : found
    end

    def [](*patterns)
      glob(patterns.flatten)
    end

    %i[exist? exists? entries children].each do |m|
      define_method(m) { |p, *rest, &blk| super(StandIn.path(p), *rest, &blk) }
    end
  end

  def self.install_file_queries
    # Chef 11's Ruby 1.9.3 has File.exists? (the original recipe uses it); Ruby >= 3.2 removed it.
    unless File.respond_to?(:exists?)
      class << File
        def exists?(p)
          exist?(p)
        end
      end
    end
    unless Dir.respond_to?(:exists?)
      class << Dir
        def exists?(p)
          exist?(p)
        end
      end
    end
    File.singleton_class.prepend(FileQueries)
    FileTest.singleton_class.prepend(FileQueries)
    Dir.singleton_class.prepend(DirQueries)
  end
end
