/**
 * The recipe side of chef-ha, without a sandbox:
 * - the rendered override is Ruby that Chef Server 11's embedded Ruby 1.9.3 accepts (`ruby -c` plus a
 *   scanner that rejects newer constructs, shown to fail on a sample of each);
 * - the chef-solo stand-in (test/sandbox/standins/chef-solo) on a scratch node root: unknown resources,
 *   attributes and actions are errors, Chef 11's scoping and guard rules, notifications, idempotent
 *   file resources, path and account mapping, node attributes.
 * Needs Debian's `ruby` (scripts/install-deps). Run: npx tsx --test test/unit/recipe-ruby.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FIXTURES_DIR, REPO_ROOT } from '../sandbox/paths.js';
import { CHEF_SOLO } from '../sandbox/standins/reconfigure.js';
import { codeOnly, scanRuby193 } from './ruby193.js';

const GOLDEN_RECIPES = ['9.2', '12', '15'].map((v) => join(REPO_ROOT, 'test', 'golden', v, 'postgresql.rb'));

describe('the recipe override is Ruby 1.9.3', () => {
  test('ruby -c accepts every rendered override (golden 9.2, 12, 15)', () => {
    for (const file of GOLDEN_RECIPES) {
      const r = spawnSync('ruby', ['-c', file], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${file}: ${r.stderr}`);
      assert.match(r.stdout, /Syntax OK/);
    }
  });

  test('the rendered overrides, the original fixture and the helper library hold no post-1.9.3 construct', async () => {
    for (const file of [
      ...GOLDEN_RECIPES,
      join(FIXTURES_DIR, 'postgresql.rb'),
      join(FIXTURES_DIR, 'libraries', 'helper.rb'),
    ]) {
      assert.deepEqual(scanRuby193(await readFile(file, 'utf8')), [], file);
    }
  });

  test('the template keeps its marker line and placeholders', async () => {
    const text = await readFile(join(REPO_ROOT, 'recipes-overrides', 'postgresql.rb'), 'utf8');
    assert.ok(text.split('\n').includes('# chef-ha recipe override'));
    for (const p of ['{{bindir}}', '{{socketDir}}', '{{osUser}}', '{{port}}', '{{mode}}', '{{pgVersion}}']) {
      assert.ok(text.includes(p), p);
    }
  });

  const samples: [string, string, RegExp][] = [
    ['safe navigation', 'x = node&.fetch(:a)\n', /safe navigation/],
    ['double splat in a def', 'def run(cmd, **opts)\n  opts\nend\n', /double splat/],
    ['double splat in a call', 'shell_out(cmd, **opts)\n', /double splat/],
    ['squiggly heredoc', 'code <<~EOH\n  echo hi\nEOH\n', /squiggly heredoc/],
    ['then', 'port = pg_attrs.then { |a| a["port"] }\n', /`then`/],
    ['yield_self', 'x = 1.yield_self { |v| v }\n', /yield_self/],
    ['required keyword argument', 'def grant(role:, database:)\n  role\nend\n', /keyword arguments in `def`/],
    [
      'optional keyword argument',
      'def grant(role, database: "opscode_chef")\n  role\nend\n',
      /keyword arguments in `def`/,
    ],
    [
      'keyword argument without parentheses',
      'def grant role, mode: :read\nend\n',
      /keyword arguments in `def`/,
    ],
    ['block keyword argument', 'roles.each { |role:| puts role }\n', /keyword arguments in block/],
    ['symbol array', 'acts = %i[run nothing]\n', /symbol array/],
    ['dig', 'x = node.dig("a", "b")\n', /`dig`/],
    ['endless method', 'def port = 5432\n', /endless method/],
    ['numbered block parameter', 'roles.map { _1.upcase }\n', /numbered block parameter/],
    ['construct inside an interpolation', 'cmd = "psql #{opts&.fetch(:x)}"\n', /safe navigation/],
    ['construct inside a heredoc interpolation', 'code <<-EOH\n#{pg&.bin}/psql\n  EOH\n', /safe navigation/],
  ];
  for (const [name, sample, construct] of samples) {
    test(`the scanner rejects a sample with ${name}`, () => {
      const found = scanRuby193(sample);
      assert.ok(
        found.some((f) => construct.test(f.construct)),
        `${JSON.stringify(sample)} -> ${JSON.stringify(found)}`,
      );
    });
  }

  test('the scanner ignores the constructs in comments, strings and heredoc text, and 1.9 syntax', () => {
    const ok = [
      '# no &. here, nor **opts or <<~ or .then\n',
      'x = "a&.b **c <<~D .then"\n',
      "y = 'def f(a:)'\n",
      'code <<-EOH\npsql <<~SQL &.x\n  EOH\n',
      'z = 2 ** 3\n',
      'h = { :a => 1, b: 2 }\nfoo(a: 1)\n',
      'begin\n  x\nrescue => e\n  y\nend\n',
      'def value=(v)\n  @v = v\nend\n',
      'w = %w(a b) + %q(c)\n',
      'r = x =~ /a&.b/\n',
    ];
    for (const sample of ok) {
      assert.deepEqual(scanRuby193(sample), [], sample);
    }
    assert.equal(codeOnly('a = "#{b}" # c\n')[0], 'a = ""b ');
  });
});

// --- the chef-solo stand-in on a scratch node root ---------------------------------------------------

const roots: string[] = [];
after(async () => {
  for (const r of roots) {
    await rm(r, { recursive: true, force: true });
  }
});

interface Solo {
  readonly code: number;
  readonly out: string;
  readonly result: {
    updated: number;
    failed: { resource: string | null; exception: string; message: string } | null;
    chef_server: Record<string, Record<string, unknown>> | null;
  };
}

/** A scratch node root with the fixture attributes, the given recipe and templates. */
async function scratchRoot(recipe: string, files: Record<string, string> = {}): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'chef-solo-unit-'));
  roots.push(root);
  await chmod(root, 0o755);
  const cb = join(root, 'opt', 'chef-server', 'embedded', 'cookbooks', 'chef-server');
  for (const d of ['attributes', 'recipes', 'templates/default', 'libraries']) {
    await mkdir(join(cb, d), { recursive: true });
  }
  await copyFile(join(FIXTURES_DIR, 'attributes-default.rb'), join(cb, 'attributes', 'default.rb'));
  await copyFile(join(FIXTURES_DIR, 'libraries', 'helper.rb'), join(cb, 'libraries', 'helper.rb'));
  await writeFile(join(cb, 'recipes', 'postgresql.rb'), recipe);
  await mkdir(join(root, 'etc', 'chef-server'), { recursive: true });
  await mkdir(join(root, 'tmp'), { recursive: true });
  await chmod(join(root, 'tmp'), 0o1777);
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(join(root, rel, '..'), { recursive: true });
    await writeFile(join(root, rel), text);
  }
  return root;
}

async function solo(root: string, cwd = root): Promise<Solo> {
  const resultFile = join(root, '..', `${root.split('/').pop() ?? 'x'}.result.json`);
  const r = spawnSync('ruby', [CHEF_SOLO, '--root', root, '--result', resultFile], {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
  });
  const result = JSON.parse(await readFile(resultFile, 'utf8')) as Solo['result'];
  await rm(resultFile, { force: true });
  return { code: r.status ?? -1, out: r.stdout + r.stderr, result };
}

/** The resource lines (`  * ...`) of a run. */
function resourceLines(out: string): string[] {
  return out.split('\n').filter((l) => l.startsWith('  * '));
}

describe('the chef-solo stand-in', () => {
  test('refuses a recipe with an unknown resource: exit 1, names it, runs nothing', async () => {
    const root = await scratchRoot(
      "file '/etc/chef-server/before' do\n  content 'x'\nend\n\nfrobnicate 'postgresql' do\n  enable true\nend\n",
    );
    const r = await solo(root);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /Recipe Compile Error in \/opt\/chef-server\/embedded\/cookbooks\/chef-server\/recipes\/postgresql\.rb/,
    );
    assert.match(r.out, /No resource or method named `frobnicate' for `Chef::Recipe "postgresql"'/);
    assert.match(r.out, / 5>> frobnicate 'postgresql' do/);
    assert.equal(r.result.failed?.exception, 'NoMethodError');
    assert.equal(existsSync(join(root, 'etc', 'chef-server', 'before')), false, 'nothing converged');
  });

  test('refuses an unknown attribute and an unknown action', async () => {
    const attr = await solo(await scratchRoot("execute 'true' do\n  frobnicate true\nend\n"));
    assert.equal(attr.code, 1);
    assert.match(attr.out, /undefined method `frobnicate' for Chef::Resource::Execute \(execute\[true\]\)/);
    const action = await solo(await scratchRoot("directory '/tmp/x' do\n  action :frob\nend\n"));
    assert.equal(action.code, 1);
    assert.match(
      action.out,
      /Option action must be equal to one of: nothing, create, delete! {2}You passed :frob\./,
    );
  });

  test("keeps Chef 11's scoping: a recipe's own methods are not visible inside a resource block", async () => {
    const root = await scratchRoot(
      "def guard_for(x)\n  \"test #{x} = 1\"\nend\n\nok = guard_for(1)\nexecute 'true' do\n  not_if ok\nend\n\nexecute 'false' do\n  not_if guard_for(2)\nend\n",
    );
    const r = await solo(root);
    assert.equal(r.code, 1);
    assert.match(r.out, /undefined method `guard_for' for Chef::Resource::Execute \(execute\[false\]\)/);
  });

  test('string guards run as root unless given :user; only_if is checked before not_if', async () => {
    const root = await scratchRoot(
      [
        "execute 'echo root-guard > /tmp/g1' do\n  user 'postgres'\n  only_if 'test \"$(id -un)\" = postgres'\nend",
        "execute 'echo user-guard > /tmp/g2' do\n  user 'postgres'\n  only_if 'test \"$(id -un)\" = postgres', :user => 'postgres'\nend",
        "execute 'echo never' do\n  only_if { false }\n  not_if { true }\nend",
        "execute 'echo block' do\n  not_if { File.exists?('/tmp/g2') }\nend",
      ].join('\n'),
    );
    const r = await solo(root);
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(resourceLines(r.out), [
      '  * execute[echo root-guard > /tmp/g1] action run (skipped due to only_if)',
      '  * execute[echo user-guard > /tmp/g2] action run',
      '  * execute[echo never] action run (skipped due to only_if)',
      '  * execute[echo block] action run (skipped due to not_if)',
    ]);
    assert.equal(await readFile(join(root, 'tmp', 'g2'), 'utf8'), 'user-guard\n');
  });

  test('file resources converge once and then report up to date; real-layout paths land under the node root', async () => {
    const recipe = [
      "directory '/var/opt/chef-server/postgresql' do\n  owner 'opscode-pgsql'\n  mode '0700'\n  recursive true\nend",
      "file '/var/opt/chef-server/postgresql/.profile' do\n  owner node['chef_server']['postgresql']['username']\n  mode '0644'\n  content \"PATH=#{node['chef_server']['postgresql']['user_path']}\\n\"\nend",
      "template '/etc/chef-server/t.conf' do\n  source 't.conf.erb'\n  variables(node['chef_server']['postgresql'].to_hash)\nend",
      "link '/opt/chef-server/init/postgresql' do\n  to '/opt/chef-server/embedded/bin/sv'\nend",
    ].join('\n');
    const root = await scratchRoot(recipe, {
      'opt/chef-server/embedded/cookbooks/chef-server/templates/default/t.conf.erb':
        'port = <%= @port %>\n<% @md5_auth_cidr_addresses.each do |c| -%>\nhost <%= c %>\n<% end -%>\n',
      'opt/chef-server/init/.keep': '',
    });
    const first = await solo(root);
    assert.equal(first.code, 0, first.out);
    assert.match(
      first.out,
      /\* directory\[\/var\/opt\/chef-server\/postgresql\] action create\n {4}- create new directory \/var\/opt\/chef-server\/postgresql\n {4}- change owner from 'root' to 'opscode-pgsql'\n {4}- change mode from '0755' to '0700'/,
    );
    const dir = await stat(join(root, 'var', 'opt', 'chef-server', 'postgresql'));
    assert.equal(dir.mode & 0o7777, 0o700);
    assert.equal(String(dir.uid), spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    assert.equal(
      await readFile(join(root, 'var', 'opt', 'chef-server', 'postgresql', '.profile'), 'utf8'),
      'PATH=/opt/chef-server/embedded/bin:/opt/chef-server/bin:$PATH\n',
    );
    assert.equal(
      await readFile(join(root, 'etc', 'chef-server', 't.conf'), 'utf8'),
      'port = 5432\nhost 127.0.0.1/32\nhost ::1/128\n',
    );
    assert.equal(first.result.updated, 4);
    const second = await solo(root);
    assert.equal(second.code, 0, second.out);
    assert.deepEqual(resourceLines(second.out), [
      '  * directory[/var/opt/chef-server/postgresql] action create (up to date)',
      '  * file[/var/opt/chef-server/postgresql/.profile] action create (up to date)',
      '  * template[/etc/chef-server/t.conf] action create (up to date)',
      '  * link[/opt/chef-server/init/postgresql] action create (up to date)',
    ]);
    assert.equal(second.result.updated, 0);
  });

  test('notifications: :immediately runs the target right away, :delayed at the end, action :nothing is skipped', async () => {
    const root = await scratchRoot(
      [
        "execute 'first' do\n  command 'echo first >> /tmp/order'\n  notifies :run, 'execute[late]', :delayed\n  notifies :run, 'execute[now]', :immediately\nend",
        "execute 'now' do\n  command 'echo now >> /tmp/order'\n  action :nothing\nend",
        "execute 'late' do\n  command 'echo late >> /tmp/order'\n  action :nothing\nend",
        "execute 'last' do\n  command 'echo last >> /tmp/order'\nend",
      ].join('\n'),
    );
    const r = await solo(root);
    assert.equal(r.code, 0, r.out);
    assert.equal(await readFile(join(root, 'tmp', 'order'), 'utf8'), 'first\nnow\nlast\nlate\n');
    assert.deepEqual(resourceLines(r.out), [
      '  * execute[first] action run',
      '  * execute[now] action run',
      '  * execute[now] action nothing (skipped due to action :nothing)',
      '  * execute[late] action nothing (skipped due to action :nothing)',
      '  * execute[last] action run',
      '  * execute[late] action run',
    ]);
  });

  test('a failing resource is named with its declaration, after its retries, and the run exits 1', async () => {
    const root = await scratchRoot(
      "execute 'true'\n\nexecute 'create opscode_chef database' do\n  command 'createdb-that-is-not-there opscode_chef'\n  retries 1\n  retry_delay 0\nend\n\nexecute 'never reached' do\n  command 'true'\nend\n",
    );
    const r = await solo(root);
    assert.equal(r.code, 1);
    assert.match(r.out, /WARN: Retrying execute\[create opscode_chef database\] action run, retry 1\/1/);
    assert.match(r.out, /Error executing action `run` on resource 'execute\[create opscode_chef database\]'/);
    assert.match(r.out, /Errno::ENOENT/);
    assert.match(
      r.out,
      /# In \/opt\/chef-server\/embedded\/cookbooks\/chef-server\/recipes\/postgresql\.rb\n\n {2}3: execute 'create opscode_chef database' do/,
    );
    assert.equal(r.result.failed?.resource, 'execute[create opscode_chef database]');
    assert.doesNotMatch(r.out, /never reached/);
  });

  test('a repeated resource name clones the prior resource (CHEF-3694)', async () => {
    const root = await scratchRoot(
      "execute 'echo x >> /tmp/clone' do\n  retries 3\nend\n\nexecute 'echo x >> /tmp/clone' do\n  only_if { true }\nend\n",
    );
    const r = await solo(root);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      /WARN: Cloning resource attributes for execute\[echo x >> \/tmp\/clone\] from prior resource \(CHEF-3694\)/,
    );
    assert.match(
      r.out,
      /WARN: Previous execute\[echo x >> \/tmp\/clone\]: \/opt\/chef-server\/embedded\/cookbooks\/chef-server\/recipes\/postgresql\.rb:1/,
    );
    assert.equal(await readFile(join(root, 'tmp', 'clone'), 'utf8'), 'x\nx\n');
  });

  test('bash and execute as opscode-pgsql run as postgres with libpq user opscode-pgsql; ruby_block does not sleep', async () => {
    const root = await scratchRoot(
      [
        "bash 'who' do\n  user 'opscode-pgsql'\n  code <<-EOH\necho \"$(id -un) $PGUSER $PGHOST $PGPORT\" > /tmp/who\n  EOH\nend",
        "user 'opscode-pgsql' do\n  system true\nend",
        "ruby_block 'sleep 5' do\n  block do\n    sleep 5\n  end\nend",
      ].join('\n'),
      { 'etc/chef-standin-host.rb': "postgresql['port'] = 6001\n" },
    );
    const started = Date.now();
    const r = await solo(root);
    assert.equal(r.code, 0, r.out);
    assert.ok(Date.now() - started < 4_000, 'ruby_block sleep 5 returned at once');
    assert.equal(
      await readFile(join(root, 'tmp', 'who'), 'utf8'),
      `postgres opscode-pgsql ${root}/tmp 6001\n`,
    );
    assert.match(
      r.out,
      /\* user\[opscode-pgsql\] action create \(skipped: stand-in, OS user postgres plays opscode-pgsql in the sandbox\)/,
    );
    assert.match(r.out, /- execute the ruby block sleep 5 \(stand-in: sleep 5 returned at once\)/);
  });

  test('node attributes: defaults < host file < chef-server.rb < secrets; an unknown chef-server.rb name fails', async () => {
    const recipe =
      "file '/etc/chef-server/attrs' do\n  content [node['chef_server']['postgresql']['port'], node['chef_server']['postgresql']['vip'], node['chef_server']['postgresql']['listen_address'], node['chef_server']['postgresql']['sql_password'], node['chef_server']['postgresql']['shared_buffers'], node['chef_server']['bootstrap']['enable'], node['chef_server']['postgresql']['chef_ha_mode'].inspect].join(' ')\nend\n";
    const root = await scratchRoot(recipe, {
      'etc/chef-standin-host.rb': "postgresql['port'] = 6001\npostgresql['vip'] = '127.0.0.2'\n",
      'etc/chef-server/chef-server.rb': "postgresql['port'] = 6002\npostgresql['sql_password'] = 'from-rb'\n",
      'etc/chef-server/chef-server-secrets.json': JSON.stringify({
        postgresql: { sql_password: 'from-secrets' },
      }),
      'var/opt/chef-server/bootstrapped': 'All your bootstraps are belong to Chef',
    });
    const r = await solo(root);
    assert.equal(r.code, 0, r.out);
    assert.equal(
      await readFile(join(root, 'etc', 'chef-server', 'attrs'), 'utf8'),
      '6002 127.0.0.2 0.0.0.0 from-secrets 32MB false nil',
    );
    assert.equal(r.result.chef_server?.['postgresql']?.['port'], 6002);
    await writeFile(join(root, 'etc', 'chef-server', 'chef-server.rb'), "frobnicate['x'] = 1\n");
    const bad = await solo(root);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /NoMethodError/);
  });

  test('the relative chef-server-ctl path of the 11.1.7 recipe resolves only from the node root (its "/")', async () => {
    const recipe = "execute 'opt/chef-server/bin/chef-server-ctl stop postgresql'\n";
    const ctl = 'opt/chef-server/bin/chef-server-ctl';
    const root = await scratchRoot(recipe, {
      [ctl]: '#!/bin/sh\necho "$@" > "$(dirname "$0")/../../../tmp/ctl"\n',
    });
    await chmod(join(root, ctl), 0o755);
    const fromRoot = await solo(root, root);
    assert.equal(fromRoot.code, 0, fromRoot.out);
    assert.equal(await readFile(join(root, 'tmp', 'ctl'), 'utf8'), 'stop postgresql\n');
    const elsewhere = await solo(root, tmpdir());
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.out, /Errno::ENOENT/);
    assert.equal(
      elsewhere.result.failed?.resource,
      'execute[opt/chef-server/bin/chef-server-ctl stop postgresql]',
    );
  });
});
