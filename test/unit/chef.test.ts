import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { OVERRIDE_MARKER, gitBlobId, identifyRecipe, sha256Hex } from '../../src/chef/recipe.js';
import {
  BUNDLE_FORMAT,
  checkManifest,
  renderSums,
  sha256,
  verifySums,
  type BundleManifest,
} from '../../src/chef/bundle.js';
import {
  RB_BEGIN,
  RB_END,
  removeMarkedBlock,
  renderChefServerRbBlock,
  replaceMarkedBlock,
} from '../../src/chef/chef-server-rb.js';
import { renderSshArgv } from '../../src/chef/ssh.js';
import { config } from '../fakes/config.js';

// src/chef/recipe.ts

/**
 * Not the upstream recipe: bytes found by search whose git blob id starts with 7928d44b, the abbreviated id
 * of chef-server 11.0.x's recipes/postgresql.rb, which is all identifyRecipe compares.
 */
const UPSTREAM_STAND_IN = Buffer.from(
  '# chef-ha test fixture: bytes whose git blob id matches an upstream chef-server 11 recipe\n# nonce 000497159995\n',
);

const HAND_EDITED = Buffer.from("# recipe with local edits\nexecute 'tune kernel'\n");
const HAND_EDITED_SHA = createHash('sha256').update(HAND_EDITED).digest('hex');

describe('gitBlobId', () => {
  // Values printed by `git hash-object --stdin` for the same bytes.
  const table: readonly (readonly [string, Buffer, string])[] = [
    ['the empty file', Buffer.alloc(0), 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'],
    ['"hello\\n"', Buffer.from('hello\n'), 'ce013625030ba8dba906f756967f9e9ca394464a'],
    [
      'UTF-8 text (the header counts bytes, not characters)',
      Buffer.from('héllo\n'),
      '5fb50d3c93474f139362304b663fe44e9d17a26e',
    ],
    ['bytes with a NUL', Buffer.from('a\0b', 'latin1'), '20b5be91886d0b6f26dc98a225c0dac05fe2c86e'],
  ];
  for (const [what, data, id] of table) {
    test(`matches git hash-object for ${what}`, () => {
      assert.equal(gitBlobId(data), id);
    });
  }
});

describe('identifyRecipe', () => {
  test('says missing when there is no file', () => {
    assert.deepEqual(identifyRecipe(undefined, [], undefined), { kind: 'missing' });
  });

  test("recognises chef-ha's override by its marker line", () => {
    const text = Buffer.from(`# managed by chef-ha-ctl 0.1.0\n${OVERRIDE_MARKER}\nruby code\n`);
    assert.deepEqual(identifyRecipe(text, [], undefined), { kind: 'override', sha256: sha256Hex(text) });
  });

  test('prefers the override marker over a site sha256 listing the same bytes', () => {
    const text = Buffer.from(`${OVERRIDE_MARKER}\n`);
    assert.equal(identifyRecipe(text, [sha256Hex(text)], sha256Hex(text)).kind, 'override');
  });

  test('recognises an upstream chef-server 11 original by its git blob id', () => {
    assert.equal(gitBlobId(UPSTREAM_STAND_IN), '7928d44b003e18815f8627923ac5d8231e2d6ffd');
    assert.deepEqual(identifyRecipe(UPSTREAM_STAND_IN, [], undefined), {
      kind: 'original',
      sha256: sha256Hex(UPSTREAM_STAND_IN),
      origin: 'chef-server 11.0.0-11.0.12',
    });
  });

  test('accepts a recipe the site declared original (chefServer.originalRecipeSha256)', () => {
    assert.deepEqual(identifyRecipe(HAND_EDITED, ['0'.repeat(64), HAND_EDITED_SHA], undefined), {
      kind: 'original',
      sha256: HAND_EDITED_SHA,
      origin: 'site',
    });
  });

  test('accepts the original recorded in the state directory when the override was installed', () => {
    assert.deepEqual(identifyRecipe(HAND_EDITED, [], HAND_EDITED_SHA), {
      kind: 'original',
      sha256: HAND_EDITED_SHA,
      origin: 'site',
    });
  });

  test('calls anything else unknown, with its sha256', () => {
    assert.deepEqual(identifyRecipe(HAND_EDITED, ['f'.repeat(64)], 'e'.repeat(64)), {
      kind: 'unknown',
      sha256: HAND_EDITED_SHA,
    });
  });

  test('hashes the bytes as sha256 hex', () => {
    assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(
      sha256Hex(Buffer.from('abc')),
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});

// src/chef/bundle.ts

function files(): Map<string, Buffer> {
  return new Map([
    ['manifest.json', Buffer.from('{"format":"chef-ha-join-bundle/1"}\n')],
    ['secret/replication.password', Buffer.from('s3cret\n')],
    ['etc-chef-server/webui_priv.pem', Buffer.from('-----BEGIN RSA PRIVATE KEY-----\n')],
  ]);
}

describe('renderSums', () => {
  test('lists sha256 and path, two spaces apart, sorted by path, newline-terminated', () => {
    const sums = renderSums(files());
    assert.equal(
      sums,
      [
        `${sha256(files().get('etc-chef-server/webui_priv.pem')!)}  etc-chef-server/webui_priv.pem`,
        `${sha256(files().get('manifest.json')!)}  manifest.json`,
        `${sha256(files().get('secret/replication.password')!)}  secret/replication.password`,
        '',
      ].join('\n'),
    );
  });
});

describe('verifySums', () => {
  test('finds nothing wrong in an intact bundle', () => {
    assert.deepEqual(verifySums(renderSums(files()), files()), []);
  });

  test('detects a changed file', () => {
    const changed = files();
    changed.set('secret/replication.password', Buffer.from('other\n'));
    assert.deepEqual(verifySums(renderSums(files()), changed), [
      'secret/replication.password does not match its checksum',
    ]);
  });

  test('detects a missing file', () => {
    const missing = files();
    missing.delete('etc-chef-server/webui_priv.pem');
    assert.deepEqual(verifySums(renderSums(files()), missing), [
      'etc-chef-server/webui_priv.pem is listed in SHA256SUMS but missing',
    ]);
  });

  test('detects an extra file not covered by the sums', () => {
    const extra = files();
    extra.set('etc-chef-server/evil.rb', Buffer.from('system("rm -rf /")\n'));
    assert.deepEqual(verifySums(renderSums(files()), extra), [
      'etc-chef-server/evil.rb is not covered by SHA256SUMS',
    ]);
  });

  test('reports a malformed line and everything it leaves uncovered', () => {
    const sums = `${renderSums(files())}not a checksum line\n`;
    assert.deepEqual(verifySums(sums, files()), ['malformed SHA256SUMS line: not a checksum line']);
    const upper = renderSums(files()).replace(/^[0-9a-f]{64}/, (h) => h.toUpperCase());
    assert.deepEqual(verifySums(upper, files()), [
      `malformed SHA256SUMS line: ${upper.split('\n')[0]!.slice(0, 80)}`,
      'etc-chef-server/webui_priv.pem is not covered by SHA256SUMS',
    ]);
  });

  test('reports every problem at once', () => {
    const tampered = files();
    tampered.set('manifest.json', Buffer.from('{}'));
    tampered.delete('secret/replication.password');
    tampered.set('extra', Buffer.from('x'));
    assert.deepEqual(verifySums(renderSums(files()), tampered), [
      'manifest.json does not match its checksum',
      'secret/replication.password is listed in SHA256SUMS but missing',
      'extra is not covered by SHA256SUMS',
    ]);
  });
});

describe('checkManifest', () => {
  const expect = { nodeName: 'db2', peerName: 'db1', major: '15', mode: 'streaming' };
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    createdAt: '2026-01-15T12:00:00.000Z',
    chefHaVersion: '0.1.0',
    master: { name: 'db1', address: '10.0.0.1', port: 5432 },
    slave: { name: 'db2' },
    postgres: { major: '15', versionNum: 150008, systemIdentifier: '7301234567890123456' },
    replication: {
      mode: 'streaming',
      synchronous: false,
      user: 'chef_ha_replication',
      slotName: 'chef_ha_db2',
    },
    etc: [],
  };

  test("accepts the bundle of this pair's master", () => {
    assert.deepEqual(checkManifest(manifest, expect), []);
  });

  test('refuses what is not a chef-ha join bundle', () => {
    assert.deepEqual(checkManifest(null, expect), [
      'not a chef-ha join bundle (format null, expected "chef-ha-join-bundle/1")',
    ]);
    assert.deepEqual(checkManifest('text', expect), [
      'not a chef-ha join bundle (format null, expected "chef-ha-join-bundle/1")',
    ]);
    assert.deepEqual(checkManifest({ ...manifest, format: 'chef-ha-join-bundle/2' }, expect), [
      'not a chef-ha join bundle (format "chef-ha-join-bundle/2", expected "chef-ha-join-bundle/1")',
    ]);
  });

  test('names each mismatch with this node: master, slave, major and mode', () => {
    const wrong = {
      ...manifest,
      master: { name: 'db3', address: 'x', port: 1 },
      slave: { name: 'db4' },
      postgres: { ...manifest.postgres, major: '12' },
      replication: { ...manifest.replication, mode: 'londiste' },
    };
    assert.deepEqual(checkManifest(wrong, expect), [
      'the bundle comes from "db3" but peer.name is "db1"',
      'the bundle was made for "db4" but node.name is "db2"',
      'the master runs PostgreSQL 12 but this node has PostgreSQL 15: streaming replication needs the same major on both',
      'the master replicates in "londiste" mode but replication.mode here is "streaming"',
    ]);
  });

  test('says "?" for sections missing from the manifest', () => {
    assert.deepEqual(checkManifest({ format: BUNDLE_FORMAT }, expect), [
      'the bundle comes from "?" but peer.name is "db1"',
      'the bundle was made for "?" but node.name is "db2"',
      'the master runs PostgreSQL ? but this node has PostgreSQL 15: streaming replication needs the same major on both',
      'the master replicates in "?" mode but replication.mode here is "streaming"',
    ]);
  });
});

// src/chef/chef-server-rb.ts

const OPERATOR_TOP = '# my settings\r\ntopology \'standalone\'\napi_fqdn "chef.example.com"  \n\n';
const OPERATOR_BOTTOM = "\nnginx['ssl_port'] = 8443\n# trailing comment without newline";
const OLD_BLOCK = `${RB_BEGIN}\npostgresql['vip'] = '10.9.9.9'\n${RB_END}`;
const NEW_BLOCK = `${RB_BEGIN}\npostgresql['vip'] = '127.0.0.1'\n${RB_END}`;

describe('renderChefServerRbBlock', () => {
  test('writes the attributes the override recipe reads, between the markers', () => {
    assert.equal(
      renderChefServerRbBlock({
        vip: '127.0.0.1',
        port: 5432,
        bindir: '/usr/lib/postgresql/15/bin',
        socketDir: '/var/run/postgresql',
        osUser: 'postgres',
        mode: 'streaming',
        version: '15',
      }),
      [
        '# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)',
        "postgresql['vip'] = '127.0.0.1'",
        "postgresql['port'] = 5432",
        "postgresql['chef_ha_bindir'] = '/usr/lib/postgresql/15/bin'",
        "postgresql['chef_ha_socket_dir'] = '/var/run/postgresql'",
        "postgresql['chef_ha_os_user'] = 'postgres'",
        "postgresql['chef_ha_version'] = '15'",
        "postgresql['chef_ha_mode'] = 'streaming'",
        '# END chef-ha',
      ].join('\n'),
    );
  });

  test('escapes quotes and backslashes in Ruby strings', () => {
    const block = renderChefServerRbBlock({
      vip: "it's",
      port: 1,
      bindir: 'C:\\pg',
      socketDir: '/s',
      osUser: 'u',
      mode: 'streaming',
      version: '15',
    });
    assert.match(block, /^postgresql\['vip'\] = 'it\\'s'$/m);
    assert.match(block, /^postgresql\['chef_ha_bindir'\] = 'C:\\\\pg'$/m);
  });
});

describe('replaceMarkedBlock', () => {
  test('replaces an existing block and keeps everything around it byte for byte', () => {
    const text = `${OPERATOR_TOP}${OLD_BLOCK}${OPERATOR_BOTTOM}`;
    assert.equal(
      replaceMarkedBlock(text, RB_BEGIN, RB_END, NEW_BLOCK),
      `${OPERATOR_TOP}${NEW_BLOCK}${OPERATOR_BOTTOM}`,
    );
  });

  test('appends the block at the end, adding the missing newline first', () => {
    assert.equal(
      replaceMarkedBlock(OPERATOR_BOTTOM, RB_BEGIN, RB_END, NEW_BLOCK),
      `${OPERATOR_BOTTOM}\n${NEW_BLOCK}\n`,
    );
    assert.equal(
      replaceMarkedBlock(OPERATOR_TOP, RB_BEGIN, RB_END, NEW_BLOCK),
      `${OPERATOR_TOP}${NEW_BLOCK}\n`,
    );
  });

  test('creates the text of an absent or empty file from the block alone', () => {
    assert.equal(replaceMarkedBlock(undefined, RB_BEGIN, RB_END, NEW_BLOCK), `${NEW_BLOCK}\n`);
    assert.equal(replaceMarkedBlock('', RB_BEGIN, RB_END, NEW_BLOCK), `${NEW_BLOCK}\n`);
  });

  test('puts the block at the top when asked (pg_hba.conf: first match wins)', () => {
    assert.equal(
      replaceMarkedBlock(OPERATOR_TOP, RB_BEGIN, RB_END, NEW_BLOCK, true),
      `${NEW_BLOCK}\n${OPERATOR_TOP}`,
    );
  });

  test('is stable: replacing the block it wrote changes nothing', () => {
    for (const atTop of [false, true]) {
      const once = replaceMarkedBlock(OPERATOR_TOP, RB_BEGIN, RB_END, NEW_BLOCK, atTop);
      assert.equal(replaceMarkedBlock(once, RB_BEGIN, RB_END, NEW_BLOCK, atTop), once);
    }
  });

  test('appends a new block when only the begin marker is there (a truncated block is left alone)', () => {
    const broken = `${RB_BEGIN}\nhalf a block\n`;
    assert.equal(replaceMarkedBlock(broken, RB_BEGIN, RB_END, NEW_BLOCK), `${broken}${NEW_BLOCK}\n`);
  });
});

describe('removeMarkedBlock', () => {
  test('removes the block and its newline and keeps the rest byte for byte', () => {
    const text = `${OPERATOR_TOP}${OLD_BLOCK}\n${OPERATOR_BOTTOM}`;
    assert.equal(removeMarkedBlock(text, RB_BEGIN, RB_END), `${OPERATOR_TOP}${OPERATOR_BOTTOM}`);
  });

  test('removes a block at the very end without a newline', () => {
    assert.equal(removeMarkedBlock(`${OPERATOR_TOP}${OLD_BLOCK}`, RB_BEGIN, RB_END), OPERATOR_TOP);
  });

  test('returns the text unchanged when there is no complete block', () => {
    assert.equal(removeMarkedBlock(OPERATOR_TOP, RB_BEGIN, RB_END), OPERATOR_TOP);
    const half = `${OPERATOR_TOP}${RB_BEGIN}\n`;
    assert.equal(removeMarkedBlock(half, RB_BEGIN, RB_END), half);
  });

  test('undoes replaceMarkedBlock on a file that ended with a newline', () => {
    const added = replaceMarkedBlock(OPERATOR_TOP, RB_BEGIN, RB_END, NEW_BLOCK);
    assert.equal(removeMarkedBlock(added, RB_BEGIN, RB_END), OPERATOR_TOP);
  });
});

// src/chef/ssh.ts

const BASE = [
  'ssh',
  '-p',
  '22',
  '-o',
  'BatchMode=yes',
  '-o',
  'ConnectTimeout=5',
  '-o',
  'ServerAliveInterval=5',
  '-o',
  'KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com,ecdh-sha2-nistp256,diffie-hellman-group14-sha256',
];

describe('renderSshArgv', () => {
  test('has nothing to run without peer.ssh', () => {
    assert.equal(renderSshArgv(config(), ['fence']), undefined);
  });

  test("runs the peer's chef-ha-ctl in batch mode with a connect timeout", () => {
    const argv = renderSshArgv(config({ peer: { ssh: { target: 'root@db2' } } }), ['fence', '--yes']);
    assert.deepEqual(argv, [...BASE, 'root@db2', '--', 'chef-ha-ctl fence --yes']);
  });

  test('adds the identity file and a strict known_hosts file when configured', () => {
    const argv = renderSshArgv(
      config({
        peer: {
          ssh: {
            target: 'db2.example.com',
            port: 2222,
            identityFile: '/root/.ssh/chef_ha',
            knownHostsFile: '/etc/chef-ha/known_hosts',
            connectTimeoutMs: 1500,
          },
        },
      }),
      ['status'],
    );
    assert.deepEqual(argv, [
      'ssh',
      '-p',
      '2222',
      '-o',
      'BatchMode=yes',
      '-o',
      'ConnectTimeout=2',
      '-o',
      'ServerAliveInterval=5',
      '-o',
      'KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com,ecdh-sha2-nistp256,diffie-hellman-group14-sha256',
      '-i',
      '/root/.ssh/chef_ha',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'UserKnownHostsFile=/etc/chef-ha/known_hosts',
      '-o',
      'StrictHostKeyChecking=yes',
      'db2.example.com',
      '--',
      'chef-ha-ctl status',
    ]);
  });

  test('quotes arguments for the remote shell', () => {
    const argv = renderSshArgv(config({ peer: { ssh: { target: 'root@db2' } } }), [
      'fence',
      '--reason',
      "failover to db1; it's $(gone)",
    ]);
    assert.equal(argv?.at(-1), `chef-ha-ctl fence --reason 'failover to db1; it'\\''s $(gone)'`);
  });

  test('uses the configured ctl argv, quoted too', () => {
    const argv = renderSshArgv(
      config({ peer: { ssh: { target: 'root@db2', ctl: ['sudo', '/opt/chef ha/bin/chef-ha-ctl'] } } }),
      ['export-bundle'],
    );
    assert.equal(argv?.at(-1), "sudo '/opt/chef ha/bin/chef-ha-ctl' export-bundle");
  });

  test('never asks for less than one second of connect timeout', () => {
    const argv = renderSshArgv(config({ peer: { ssh: { target: 'db2', connectTimeoutMs: 100 } } }), ['x']);
    assert.ok(argv?.includes('ConnectTimeout=1'));
  });
});
