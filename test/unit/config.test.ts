import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig, parseConfigText, slotNameFor } from '../../src/core/config.js';
import { ConfigError, ExitCode } from '../../src/core/errors.js';
import { rawConfig } from '../fakes/config.js';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.exitCode, ExitCode.Config);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('parseConfig', () => {
  test('fills every default of a minimal config from the PostgreSQL version', () => {
    const c = parseConfig(rawConfig());
    assert.equal(c.postgres.version, '15');
    assert.equal(c.postgres.bindir, '/usr/lib/postgresql/15/bin');
    assert.equal(c.postgres.dataDir, '/var/lib/postgresql/15/main');
    assert.equal(c.postgres.confDir, '/etc/postgresql/15/main');
    assert.equal(c.postgres.logFile, '/var/log/postgresql/postgresql-15-main.log');
    assert.equal(c.postgres.port, 5432);
    assert.equal(c.postgres.manager, 'pg_ctlcluster');
    assert.equal(c.replication.mode, 'streaming');
    assert.equal(c.replication.synchronous, false);
    assert.equal(c.replication.user, 'chef_ha_replication');
    assert.equal(c.failover.maxLagBytes, 16 * 1024 * 1024);
    assert.equal(c.stateDir, '/var/opt/chef-ha');
    assert.deepEqual(c.chefServer.tables, ['clients', 'nodes', 'osc_users']);
    assert.equal(c.chefServer.embeddedPostgres.osUser, 'opscode-pgsql');
    assert.equal(c.peer.ssh, undefined);
  });

  test('derives the Debian paths from version and cluster name', () => {
    const c = parseConfig(rawConfig({ postgres: { version: '9.2', cluster: 'chef' } }));
    assert.equal(c.postgres.bindir, '/usr/lib/postgresql/9.2/bin');
    assert.equal(c.postgres.dataDir, '/var/lib/postgresql/9.2/chef');
    assert.equal(c.postgres.confDir, '/etc/postgresql/9.2/chef');
    assert.equal(c.postgres.logFile, '/var/log/postgresql/postgresql-9.2-chef.log');
  });

  test('keeps explicit paths instead of the derived ones', () => {
    const c = parseConfig(
      rawConfig({
        postgres: {
          version: '12',
          bindir: '/opt/pg/bin',
          dataDir: '/srv/pg',
          confDir: '/srv/conf',
          logFile: '/srv/pg.log',
        },
      }),
    );
    assert.equal(c.postgres.bindir, '/opt/pg/bin');
    assert.equal(c.postgres.dataDir, '/srv/pg');
    assert.equal(c.postgres.confDir, '/srv/conf');
    assert.equal(c.postgres.logFile, '/srv/pg.log');
  });

  test('gives the peer the local PostgreSQL and health ports unless it has its own', () => {
    const same = parseConfig(rawConfig({ postgres: { port: 5433 }, health: { port: 6000 } }));
    assert.equal(same.peer.postgresPort, 5433);
    assert.equal(same.peer.healthPort, 6000);
    const own = parseConfig(rawConfig({ peer: { postgresPort: 6543, healthPort: 7000 } }));
    assert.equal(own.peer.postgresPort, 6543);
    assert.equal(own.peer.healthPort, 7000);
  });

  test('fills peer.ssh defaults when ssh is configured', () => {
    const c = parseConfig(rawConfig({ peer: { ssh: { target: 'root@db2' } } }));
    assert.deepEqual(c.peer.ssh, {
      target: 'root@db2',
      port: 22,
      ctl: ['chef-ha-ctl'],
      connectTimeoutMs: 5000,
    });
  });

  test('reports every problem at once, each with its key path', () => {
    const problems = problemsOf(() =>
      parseConfig({
        node: { name: 'Db1', address: '' },
        peer: { name: 'db2', address: '10.0.0.2', ssh: { target: 'not a host' } },
        postgres: { version: '8.4', port: 0, bindir: 'relative/bin' },
        failover: { maxLagBytes: -1 },
        replication: { mode: 'bucardo' },
      }),
    );
    const paths = problems.map((p) => p.slice(0, p.indexOf(':')));
    assert.deepEqual(paths.sort(), [
      'failover.maxLagBytes',
      'node.address',
      'node.name',
      'peer.ssh.target',
      'postgres.bindir',
      'postgres.port',
      'postgres.version',
      'replication.mode',
    ]);
    assert.ok(problems.includes('postgres.bindir: must be an absolute path'));
    assert.ok(problems.includes('postgres.version: a PostgreSQL major such as "15" or "9.2"'));
    assert.ok(problems.includes('peer.ssh.target: use [user@]host'));
  });

  test('puts the problem count, every problem and a hint in the message', () => {
    try {
      parseConfig(
        {
          node: { name: 'db1', address: 'x' },
          peer: { name: 'db2', address: 'y' },
          postgres: { port: 0, version: '7' },
        },
        '/etc/chef-ha/chef-ha.json',
      );
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      const lines = error.message.split('\n');
      assert.equal(lines[0], '/etc/chef-ha/chef-ha.json is invalid (2 problems):');
      assert.equal(lines.length, 3);
      assert.ok(lines.every((l, i) => i === 0 || l.startsWith('  - postgres.')));
      assert.match(error.hint ?? '', /chef-ha-ctl check/);
    }
  });

  test('says "1 problem" for a single problem', () => {
    try {
      parseConfig(rawConfig({ postgres: { port: 70000 } }));
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /^configuration is invalid \(1 problem\):\n {2}- postgres\.port: /);
    }
  });

  test('flags unknown keys at every level, naming the keys and where they are', () => {
    const problems = problemsOf(() =>
      parseConfig({
        ...rawConfig(),
        colour: 'blue',
        node: { name: 'db1', address: '10.0.0.1', role: 'master' },
        peer: { name: 'db2', address: '10.0.0.2', sshTarget: 'x', pgPort: 1 },
        chefServer: { embeddedPostgres: { dataDirectory: '/x' } },
      }),
    );
    assert.deepEqual([...problems].sort(), [
      '(top level): unknown key "colour"',
      'chefServer.embeddedPostgres: unknown key "dataDirectory"',
      'node: unknown key "role"',
      'peer: unknown keys "sshTarget", "pgPort"',
    ]);
  });

  test('reports missing node and peer sections', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig({})),
      [
        'node: Invalid input: expected object, received undefined',
        'peer: Invalid input: expected object, received undefined',
      ],
    );
  });

  test('reports a config that is not an object at the top level', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(null)),
      ['(top level): Invalid input: expected object, received null'],
    );
  });

  test('names array elements by index in key paths', () => {
    const problems = problemsOf(() =>
      parseConfig(rawConfig({ chefServer: { tables: ['nodes', 'Bad-Table'] } })),
    );
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /^chefServer\.tables\.\[1\]: /);
  });

  test('refuses a peer.name equal to node.name', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(rawConfig({ peer: { name: 'db1' } }))),
      ['peer.name: must differ from node.name ("db1")'],
    );
  });

  test('validates node names as PostgreSQL-friendly identifiers', () => {
    for (const bad of ['1db', 'db_1', 'DB1', '', 'a'.repeat(42)]) {
      const problems = problemsOf(() => parseConfig(rawConfig({ node: { name: bad } })));
      assert.match(problems[0] ?? '', /^node\.name: /, bad);
    }
    assert.equal(parseConfig(rawConfig({ node: { name: `a${'-'.repeat(40)}` } })).node.name.length, 41);
  });
});

describe('parseConfigText', () => {
  test('parses JSON text and names the file in problems', () => {
    assert.equal(parseConfigText(JSON.stringify(rawConfig()), '/etc/chef-ha/chef-ha.json').node.name, 'db1');
    try {
      parseConfigText('{"node": {"name": "db1"}}', '/etc/chef-ha/chef-ha.json');
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /^\/etc\/chef-ha\/chef-ha\.json is invalid \(2 problems\):/);
    }
  });

  test('reports invalid JSON with the file, the parser position and a hint', () => {
    try {
      parseConfigText('{"node": {"name": "db1",}}', '/etc/chef-ha/chef-ha.json');
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /^\/etc\/chef-ha\/chef-ha\.json is not valid JSON: .*position 24/);
      assert.deepEqual(error.problems, []);
      assert.match(error.hint ?? '', /trailing comma/);
    }
  });
});

describe('slotNameFor', () => {
  test('turns a node name into a slot and application name', () => {
    assert.equal(slotNameFor('db-2'), 'chef_ha_db_2');
    assert.equal(slotNameFor('db1'), 'chef_ha_db1');
  });
});
