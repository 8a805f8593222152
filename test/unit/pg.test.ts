import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  featuresFor,
  majorFromVersionNum,
  majorNumber,
  renderBasebackupArgv,
  renderFenceFile,
  renderPrimaryConninfo,
  renderReplicationGrants,
  renderReplicationRoleSql,
  renderServerSettings,
  renderStandbySettings,
  type PgFeatures,
} from '../../src/pg/version.js';
import { formatBytes, formatLsn, lsnDiff, parseLsn } from '../../src/pg/lsn.js';
import { buildConninfo, confString, conninfoValue, quoteIdent, quoteLiteral } from '../../src/pg/conninfo.js';
import { createHash, createHmac } from 'node:crypto';
import { md5Verifier, scramSha256Verifier } from '../../src/pg/scram.js';
import { renderServiceCommand, type ServiceCommand } from '../../src/pg/manager.js';
import { readServer } from '../../src/core/facts.js';
import { SqlError } from '../../src/ports/postgres.js';
import { config } from '../fakes/config.js';

// src/pg/version.ts

describe('majorNumber and majorFromVersionNum', () => {
  const table: readonly (readonly [string, number])[] = [
    ['9.2', 902],
    ['9.6', 906],
    ['10', 1000],
    ['15', 1500],
    [' 12 ', 1200],
  ];
  for (const [text, n] of table) {
    test(`reads "${text}" as ${n}`, () => {
      assert.equal(majorNumber(text), n);
    });
  }

  test('refuses text that is not a major version', () => {
    assert.throws(() => majorNumber('fifteen'), /^Error: not a PostgreSQL major version: "fifteen"$/);
    assert.throws(() => majorNumber('9.2.4'), /not a PostgreSQL major version/);
  });

  const nums: readonly (readonly [number, string])[] = [
    [90224, '9.2'],
    [90624, '9.6'],
    [100023, '10'],
    [120015, '12'],
    [150008, '15'],
  ];
  for (const [num, major] of nums) {
    test(`reads server_version_num ${num} as major ${major}`, () => {
      assert.equal(majorFromVersionNum(num), major);
    });
  }
});

describe('featuresFor', () => {
  type Row = Omit<PgFeatures, 'fn' | 'major'> & { readonly fnStyle: 'xlog' | 'wal' };
  const table: Readonly<Record<string, Row>> = {
    '9.2': {
      standbySignal: 'recovery.conf',
      walLevel: 'hot_standby',
      walKeep: 'wal_keep_segments',
      passwordEncryption: 'md5',
      alterSystem: false,
      controlFunctions: false,
      pendingRestart: false,
      lagColumns: false,
      replicationSlots: false,
      walLogHints: false,
      pgRewind: false,
      sqlPromote: false,
      parameterGrants: false,
      replyTime: false,
      basebackupWalArgs: ['-x'],
      basebackupSlotArg: false,
      fnStyle: 'xlog',
    },
    '9.6': {
      standbySignal: 'recovery.conf',
      walLevel: 'hot_standby',
      walKeep: 'wal_keep_segments',
      passwordEncryption: 'md5',
      alterSystem: true,
      controlFunctions: true,
      pendingRestart: true,
      lagColumns: false,
      replicationSlots: true,
      walLogHints: true,
      pgRewind: true,
      sqlPromote: false,
      parameterGrants: false,
      replyTime: false,
      basebackupWalArgs: ['-X', 'stream'],
      basebackupSlotArg: true,
      fnStyle: 'xlog',
    },
    '11': {
      standbySignal: 'recovery.conf',
      walLevel: 'replica',
      walKeep: 'wal_keep_segments',
      passwordEncryption: 'scram-sha-256',
      alterSystem: true,
      controlFunctions: true,
      pendingRestart: true,
      lagColumns: true,
      replicationSlots: true,
      walLogHints: true,
      pgRewind: true,
      sqlPromote: false,
      parameterGrants: false,
      replyTime: false,
      basebackupWalArgs: ['-X', 'stream'],
      basebackupSlotArg: true,
      fnStyle: 'wal',
    },
    '12': {
      standbySignal: 'standby.signal',
      walLevel: 'replica',
      walKeep: 'wal_keep_segments',
      passwordEncryption: 'scram-sha-256',
      alterSystem: true,
      controlFunctions: true,
      pendingRestart: true,
      lagColumns: true,
      replicationSlots: true,
      walLogHints: true,
      pgRewind: true,
      sqlPromote: true,
      parameterGrants: false,
      replyTime: true,
      basebackupWalArgs: ['-X', 'stream'],
      basebackupSlotArg: true,
      fnStyle: 'wal',
    },
    '13': {
      standbySignal: 'standby.signal',
      walLevel: 'replica',
      walKeep: 'wal_keep_size',
      passwordEncryption: 'scram-sha-256',
      alterSystem: true,
      controlFunctions: true,
      pendingRestart: true,
      lagColumns: true,
      replicationSlots: true,
      walLogHints: true,
      pgRewind: true,
      sqlPromote: true,
      parameterGrants: false,
      replyTime: true,
      basebackupWalArgs: ['-X', 'stream'],
      basebackupSlotArg: true,
      fnStyle: 'wal',
    },
    '15': {
      standbySignal: 'standby.signal',
      walLevel: 'replica',
      walKeep: 'wal_keep_size',
      passwordEncryption: 'scram-sha-256',
      alterSystem: true,
      controlFunctions: true,
      pendingRestart: true,
      lagColumns: true,
      replicationSlots: true,
      walLogHints: true,
      pgRewind: true,
      sqlPromote: true,
      parameterGrants: true,
      replyTime: true,
      basebackupWalArgs: ['-X', 'stream'],
      basebackupSlotArg: true,
      fnStyle: 'wal',
    },
  };
  for (const [version, row] of Object.entries(table)) {
    test(`knows what PostgreSQL ${version} supports`, () => {
      const { fn, major, ...rest } = featuresFor(version);
      const { fnStyle, ...expected } = row;
      assert.equal(major, version);
      assert.deepEqual(rest, expected);
      assert.equal(fn.currentLsn, fnStyle === 'wal' ? 'pg_current_wal_lsn' : 'pg_current_xlog_location');
      assert.equal(fn.replayColumn, fnStyle === 'wal' ? 'replay_lsn' : 'replay_location');
    });
  }

  test('names the xlog functions and columns before 10 and the wal ones from 10', () => {
    assert.deepEqual(featuresFor('9.6').fn, {
      currentLsn: 'pg_current_xlog_location',
      receiveLsn: 'pg_last_xlog_receive_location',
      replayLsn: 'pg_last_xlog_replay_location',
      lsnDiff: 'pg_xlog_location_diff',
      replayColumn: 'replay_location',
      sentColumn: 'sent_location',
      flushColumn: 'flush_location',
    });
    assert.deepEqual(featuresFor('10').fn, {
      currentLsn: 'pg_current_wal_lsn',
      receiveLsn: 'pg_last_wal_receive_lsn',
      replayLsn: 'pg_last_wal_replay_lsn',
      lsnDiff: 'pg_wal_lsn_diff',
      replayColumn: 'replay_lsn',
      sentColumn: 'sent_lsn',
      flushColumn: 'flush_lsn',
    });
  });

  test('refuses PostgreSQL before 9.2', () => {
    assert.throws(
      () => featuresFor('9.1'),
      /^Error: PostgreSQL 9\.1 is not supported: streaming replication as chef-ha uses it needs 9\.2 or later$/,
    );
  });
});

describe('renderServerSettings', () => {
  const input = { nodeName: 'db1', listenAddresses: 'localhost,10.0.0.1', walKeepMb: 256 };

  test('renders the 9.2 settings: hot_standby level, segments, no slots or hints', () => {
    assert.deepEqual(renderServerSettings({ ...input, version: '9.2' }), [
      "listen_addresses = 'localhost,10.0.0.1'",
      'wal_level = hot_standby',
      'max_wal_senders = 10',
      'wal_keep_segments = 16',
      'hot_standby = on',
    ]);
  });

  test('renders the 12 settings: replica level, slots, segments, hints and a short retry interval', () => {
    assert.deepEqual(renderServerSettings({ ...input, version: '12' }), [
      "listen_addresses = 'localhost,10.0.0.1'",
      'wal_level = replica',
      'max_wal_senders = 10',
      'max_replication_slots = 10',
      'wal_keep_segments = 16',
      'hot_standby = on',
      'wal_log_hints = on',
      "wal_retrieve_retry_interval = '1s'",
    ]);
  });

  test('renders the 15 settings with wal_keep_size', () => {
    assert.deepEqual(renderServerSettings({ ...input, version: '15' }), [
      "listen_addresses = 'localhost,10.0.0.1'",
      'wal_level = replica',
      'max_wal_senders = 10',
      'max_replication_slots = 10',
      "wal_keep_size = '256MB'",
      'hot_standby = on',
      'wal_log_hints = on',
      "wal_retrieve_retry_interval = '1s'",
    ]);
  });

  test('rounds walKeepMb up to whole 16 MB segments and keeps at least one', () => {
    const segments = (walKeepMb: number): string | undefined =>
      renderServerSettings({ ...input, version: '12', walKeepMb }).find((l) =>
        l.startsWith('wal_keep_segments'),
      );
    assert.equal(segments(0), 'wal_keep_segments = 1');
    assert.equal(segments(17), 'wal_keep_segments = 2');
    assert.equal(segments(1024), 'wal_keep_segments = 64');
  });

  test('doubles quotes in listen_addresses as postgresql.conf wants', () => {
    const lines = renderServerSettings({ ...input, version: '15', listenAddresses: "it's" });
    assert.equal(lines[0], "listen_addresses = 'it''s'");
  });
});

describe('renderStandbySettings', () => {
  const input = {
    primaryHost: '10.0.0.1',
    primaryPort: 5432,
    user: 'chef_ha_replication',
    passfile: '/var/lib/postgresql/.chef-ha.pgpass',
    applicationName: 'chef_ha_db2',
    slotName: 'chef_ha_db2',
  };
  const conninfo =
    "host=''10.0.0.1'' port=''5432'' user=''chef_ha_replication'' passfile=''/var/lib/postgresql/.chef-ha.pgpass'' application_name=''chef_ha_db2'' connect_timeout=''2''";

  test('builds primary_conninfo from the passfile, never with a password', () => {
    assert.equal(
      renderPrimaryConninfo({ ...input, version: '15' }),
      "host='10.0.0.1' port='5432' user='chef_ha_replication' passfile='/var/lib/postgresql/.chef-ha.pgpass' application_name='chef_ha_db2' connect_timeout='2'",
    );
  });

  test('writes recovery.conf with standby_mode and no slot on 9.2', () => {
    assert.deepEqual(renderStandbySettings({ ...input, version: '9.2' }), {
      confLines: [],
      dataDirFile: {
        name: 'recovery.conf',
        content: [
          '# managed by chef-ha-ctl: this node is a standby',
          "standby_mode = 'on'",
          `primary_conninfo = '${conninfo}'`,
          "recovery_target_timeline = 'latest'",
          '',
        ].join('\n'),
      },
    });
  });

  test('writes recovery.conf with the slot on 11', () => {
    const files = renderStandbySettings({ ...input, version: '11' });
    assert.equal(files.dataDirFile.name, 'recovery.conf');
    assert.match(files.dataDirFile.content, /^primary_slot_name = 'chef_ha_db2'$/m);
  });

  test('puts the settings into chef-ha.conf and an empty marker standby.signal from 12', () => {
    for (const version of ['12', '15']) {
      assert.deepEqual(renderStandbySettings({ ...input, version }), {
        confLines: [
          `primary_conninfo = '${conninfo}'`,
          "primary_slot_name = 'chef_ha_db2'",
          "recovery_target_timeline = 'latest'",
        ],
        dataDirFile: {
          name: 'standby.signal',
          content: '# managed by chef-ha-ctl: this node is a standby\n',
        },
      });
    }
  });
});

describe('renderBasebackupArgv', () => {
  const opts = { host: '10.0.0.1', port: 5432, user: 'rep', dataDir: '/data', slotName: 'chef_ha_db2' };
  const common = ['-h', '10.0.0.1', '-p', '5432', '-U', 'rep', '-D', '/data'];
  const tail = ['--checkpoint=fast', '--progress', '--no-password'];

  test('fetches WAL with -x and no slot on 9.2', () => {
    assert.deepEqual(renderBasebackupArgv('9.2', '/usr/lib/postgresql/9.2/bin', opts), [
      '/usr/lib/postgresql/9.2/bin/pg_basebackup',
      ...common,
      '-x',
      ...tail,
    ]);
  });

  test('streams WAL with -X stream but has no -S before 9.6', () => {
    assert.deepEqual(renderBasebackupArgv('9.5', '/b', opts), [
      '/b/pg_basebackup',
      ...common,
      '-X',
      'stream',
      ...tail,
    ]);
  });

  test('streams WAL and uses the slot with -S from 9.6', () => {
    for (const version of ['9.6', '12', '15']) {
      assert.deepEqual(renderBasebackupArgv(version, '/b', opts), [
        '/b/pg_basebackup',
        ...common,
        '-X',
        'stream',
        ...tail,
        '-S',
        'chef_ha_db2',
      ]);
    }
  });
});

describe('renderReplicationGrants', () => {
  test('grants nothing extra on 9.2', () => {
    assert.deepEqual(renderReplicationGrants('9.2', 'chef_ha_replication'), []);
  });

  test('grants monitoring and signalling on 10', () => {
    assert.deepEqual(renderReplicationGrants('10', 'rep'), [
      'GRANT pg_monitor TO "rep"',
      'GRANT pg_signal_backend TO "rep"',
    ]);
  });

  test('adds file writing and the pg_rewind functions on 12', () => {
    assert.deepEqual(renderReplicationGrants('12', 'rep'), [
      'GRANT pg_monitor TO "rep"',
      'GRANT pg_signal_backend TO "rep"',
      'GRANT pg_write_server_files TO "rep"',
      'GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO "rep"',
      'GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO "rep"',
      'GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO "rep"',
      'GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO "rep"',
    ]);
  });

  test('adds ALTER SYSTEM on the two parameters, pg_reload_conf and pg_checkpoint on 15', () => {
    const grants = renderReplicationGrants('15', 'rep');
    assert.equal(grants.length, 10);
    assert.deepEqual(grants.slice(-3), [
      'GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names, default_transaction_read_only TO "rep"',
      'GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO "rep"',
      'GRANT pg_checkpoint TO "rep"',
    ]);
  });

  test('quotes the role as an identifier', () => {
    assert.deepEqual(renderReplicationGrants('10', 'we"ird'), [
      'GRANT pg_monitor TO "we""ird"',
      'GRANT pg_signal_backend TO "we""ird"',
    ]);
  });
});

describe('renderReplicationRoleSql and renderFenceFile', () => {
  test('creates or alters the role with the verifier as a literal', () => {
    assert.equal(
      renderReplicationRoleSql('rep', "md5ab'c", false),
      `CREATE ROLE "rep" WITH LOGIN REPLICATION PASSWORD 'md5ab''c'`,
    );
    assert.equal(
      renderReplicationRoleSql('rep', 'v', true),
      `ALTER ROLE "rep" WITH LOGIN REPLICATION PASSWORD 'v'`,
    );
  });

  test('fences with recovery.conf (standby_mode on) before 12 and standby.signal from 12', () => {
    const note = '# managed by chef-ha-ctl: this node was fenced after a failover; run `chef-ha-ctl rejoin`';
    assert.deepEqual(renderFenceFile('9.2'), {
      name: 'recovery.conf',
      content: `${note}\nstandby_mode = 'on'\n`,
    });
    assert.deepEqual(renderFenceFile('11'), {
      name: 'recovery.conf',
      content: `${note}\nstandby_mode = 'on'\n`,
    });
    assert.deepEqual(renderFenceFile('12'), { name: 'standby.signal', content: `${note}\n` });
  });
});

// src/pg/lsn.ts

describe('parseLsn and formatLsn', () => {
  test('reads the two hex halves as high and low 32 bits', () => {
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) + 0xb374d848n);
    assert.equal(parseLsn('FFFFFFFF/FFFFFFFF'), 2n ** 64n - 1n);
    assert.equal(parseLsn(' 0/3000060\n'), 0x3000060n);
    assert.equal(parseLsn('a/b'), (10n << 32n) + 11n);
  });

  test('refuses text that is not an LSN', () => {
    for (const bad of ['', '0', '0/', '/0', 'x/0', '1/2/3', '100000000/0']) {
      assert.throws(() => parseLsn(bad), /^Error: not a WAL position: /, bad);
    }
  });

  test('prints the way PostgreSQL does (upper case, no padding) and round-trips', () => {
    assert.equal(formatLsn(0n), '0/0');
    assert.equal(formatLsn((0x16n << 32n) + 0xb374d848n), '16/B374D848');
    for (const lsn of ['0/3000060', '1/0', 'FFFFFFFF/FFFFFFFF', 'A/B']) {
      assert.equal(formatLsn(parseLsn(lsn)), lsn);
    }
  });
});

describe('lsnDiff', () => {
  test('counts the bytes from b to a, across the 32-bit boundary', () => {
    assert.equal(lsnDiff('0/3000060', '0/3000000'), 0x60);
    assert.equal(lsnDiff('1/0', '0/FFFFFFFF'), 1);
    assert.equal(lsnDiff('1/0', '0/FD000000'), 48 * 1024 * 1024);
  });

  test('is never negative', () => {
    assert.equal(lsnDiff('0/0', '1/0'), 0);
    assert.equal(lsnDiff('5/5', '5/5'), 0);
  });
});

describe('formatBytes', () => {
  const table: readonly (readonly [number, string])[] = [
    [0, '0 B'],
    [512, '512 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [48 * 1024 * 1024, '48.0 MiB'],
    [16 * 1024 * 1024, '16.0 MiB'],
    [1024 ** 3, '1.0 GiB'],
    [3 * 1024 ** 4, '3.0 TiB'],
    [2048 * 1024 ** 4, '2048.0 TiB'],
  ];
  for (const [bytes, text] of table) {
    test(`prints ${bytes} as "${text}"`, () => {
      assert.equal(formatBytes(bytes), text);
    });
  }
});

// src/pg/conninfo.ts

describe('conninfo quoting', () => {
  test('quotes every value and escapes quotes and backslashes with a backslash', () => {
    assert.equal(conninfoValue('db1'), "'db1'");
    assert.equal(conninfoValue(''), "''");
    assert.equal(conninfoValue("it's"), "'it\\'s'");
    assert.equal(conninfoValue('C:\\pg'), "'C:\\\\pg'");
    assert.equal(conninfoValue('a b=c'), "'a b=c'");
  });

  test('builds key=value pairs in order and skips undefined values', () => {
    assert.equal(
      buildConninfo([
        ['host', 'db1'],
        ['port', 5432],
        ['sslmode', undefined],
        ['application_name', "o'brien"],
      ]),
      "host='db1' port='5432' application_name='o\\'brien'",
    );
    assert.equal(buildConninfo([]), '');
  });
});

describe('postgresql.conf and SQL quoting', () => {
  test('doubles single quotes in postgresql.conf strings', () => {
    assert.equal(confString("host='db1'"), "'host=''db1'''");
    assert.equal(confString(''), "''");
  });

  test('quotes identifiers with double quotes, doubled inside', () => {
    assert.equal(quoteIdent('chef_ha_db2'), '"chef_ha_db2"');
    assert.equal(quoteIdent('a"b'), '"a""b"');
  });

  test('quotes literals with single quotes, doubled inside, backslashes kept', () => {
    assert.equal(quoteLiteral('opscode_chef'), "'opscode_chef'");
    assert.equal(quoteLiteral("it's"), "'it''s'");
    assert.equal(quoteLiteral('a\\b'), "'a\\b'");
  });
});

// src/pg/scram.ts

/**
 * RFC 7677 section 3: the SCRAM-SHA-256 exchange for user "user", password "pencil". A server holding a
 * correct verifier (StoredKey, ServerKey) accepts the client's proof and answers with the same server
 * signature as the RFC. That is what PostgreSQL does with the verifier in pg_authid.
 */
const RFC7677 = {
  password: 'pencil',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  iterations: 4096,
  clientFirstBare: 'n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinalWithoutProof: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  clientProof: 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverSignature: '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

function parseVerifier(verifier: string): {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
} {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(verifier);
  assert.ok(m, `not a SCRAM-SHA-256 verifier: ${verifier}`);
  return {
    iterations: Number(m[1]),
    salt: Buffer.from(m[2]!, 'base64'),
    storedKey: Buffer.from(m[3]!, 'base64'),
    serverKey: Buffer.from(m[4]!, 'base64'),
  };
}

function xor(a: Buffer, b: Buffer): Buffer {
  return Buffer.from(a.map((byte, i) => byte ^ (b[i] ?? 0)));
}

describe('scramSha256Verifier', () => {
  test('lets a server accept the RFC 7677 exchange and answer with its server signature', () => {
    const verifier = scramSha256Verifier(
      RFC7677.password,
      Buffer.from(RFC7677.salt, 'base64'),
      RFC7677.iterations,
    );
    const { iterations, salt, storedKey, serverKey } = parseVerifier(verifier);
    assert.equal(iterations, 4096);
    assert.equal(salt.toString('base64'), RFC7677.salt);

    // RFC 5802 section 3, the server side: recover ClientKey from the proof and compare H(ClientKey).
    const authMessage = [RFC7677.clientFirstBare, RFC7677.serverFirst, RFC7677.clientFinalWithoutProof].join(
      ',',
    );
    const clientSignature = createHmac('sha256', storedKey).update(authMessage).digest();
    const clientKey = xor(Buffer.from(RFC7677.clientProof, 'base64'), clientSignature);
    assert.deepEqual(createHash('sha256').update(clientKey).digest(), storedKey);

    const serverSignature = createHmac('sha256', serverKey).update(authMessage).digest('base64');
    assert.equal(serverSignature, RFC7677.serverSignature);
  });

  test('uses 4096 iterations by default, as PostgreSQL does', () => {
    assert.match(
      scramSha256Verifier('secret', Buffer.alloc(16, 1)),
      /^SCRAM-SHA-256\$4096:AQEBAQEBAQEBAQEBAQEBAQ==\$/,
    );
  });

  test('depends on the salt', () => {
    const a = scramSha256Verifier('secret', Buffer.alloc(16, 1));
    const b = scramSha256Verifier('secret', Buffer.alloc(16, 2));
    assert.notEqual(a.split('$')[2], b.split('$')[2]);
  });

  test('normalises the password with NFKC (SASLprep maps compatibility characters)', () => {
    const salt = Buffer.alloc(16, 7);
    // U+2168 ROMAN NUMERAL NINE is "IX" after NFKC.
    assert.equal(scramSha256Verifier('\u2168', salt), scramSha256Verifier('IX', salt));
  });
});

describe('md5Verifier', () => {
  test('is "md5" and the md5 of password then user name (PostgreSQL before 10)', () => {
    // echo -n 'pencilchef_ha_replication' | md5sum
    assert.equal(md5Verifier('pencil', 'chef_ha_replication'), 'md53a5afa8c61aec429a022386fa149029b');
  });
});

// src/pg/manager.ts

describe('renderServiceCommand with pg_ctlcluster (Debian)', () => {
  const c = config({ postgres: { version: '12', cluster: 'chef' } });
  const table: readonly (readonly [
    Parameters<typeof renderServiceCommand>[1],
    'fast' | 'immediate' | undefined,
    readonly string[],
  ])[] = [
    ['start', undefined, ['pg_ctlcluster', '12', 'chef', 'start']],
    ['stop', undefined, ['pg_ctlcluster', '12', 'chef', 'stop', '-m', 'fast']],
    ['stop', 'immediate', ['pg_ctlcluster', '12', 'chef', 'stop', '-m', 'immediate']],
    ['restart', undefined, ['pg_ctlcluster', '12', 'chef', 'restart', '-m', 'fast']],
    ['reload', undefined, ['pg_ctlcluster', '12', 'chef', 'reload']],
    ['promote', undefined, ['pg_ctlcluster', '12', 'chef', 'promote']],
  ];
  for (const [verb, mode, argv] of table) {
    test(`runs ${argv.join(' ')} as the invoking user`, () => {
      const cmd = renderServiceCommand(c, verb, mode);
      assert.deepEqual(cmd, { argv: [...argv] as ServiceCommand['argv'], timeoutMs: 120_000 });
    });
  }
});

describe('renderServiceCommand with pg_ctl', () => {
  const c = config({
    postgres: {
      manager: 'pg_ctl',
      version: '15',
      dataDir: '/srv/pg',
      confDir: '/srv/conf',
      logFile: '/srv/pg.log',
    },
    failover: { promoteTimeoutMs: 45_500 },
  });
  const base = ['/usr/lib/postgresql/15/bin/pg_ctl', '-D', '/srv/pg'];

  test('starts with the Debian config file and a log, waiting 60 s, as the cluster user', () => {
    assert.deepEqual(renderServiceCommand(c, 'start'), {
      argv: [
        ...base,
        '-o',
        '-c config_file=/srv/conf/postgresql.conf',
        '-l',
        '/srv/pg.log',
        '-w',
        '-t',
        '60',
        'start',
      ],
      user: 'postgres',
      timeoutMs: 120_000,
    });
  });

  test('restarts with the stop mode', () => {
    assert.deepEqual(renderServiceCommand(c, 'restart', 'immediate').argv, [
      ...base,
      '-o',
      '-c config_file=/srv/conf/postgresql.conf',
      '-l',
      '/srv/pg.log',
      '-m',
      'immediate',
      '-w',
      '-t',
      '60',
      'restart',
    ]);
  });

  test('stops fast by default', () => {
    assert.deepEqual(renderServiceCommand(c, 'stop'), {
      argv: [...base, '-m', 'fast', '-w', '-t', '60', 'stop'],
      user: 'postgres',
      timeoutMs: 90_000,
    });
  });

  test('reloads', () => {
    assert.deepEqual(renderServiceCommand(c, 'reload'), {
      argv: [...base, 'reload'],
      user: 'postgres',
      timeoutMs: 30_000,
    });
  });

  test('promotes waiting promoteTimeoutMs (rounded up to seconds), with 5 s of slack for the process', () => {
    assert.deepEqual(renderServiceCommand(c, 'promote'), {
      argv: [...base, '-w', '-t', '46', 'promote'],
      user: 'postgres',
      timeoutMs: 50_500,
    });
  });
});

describe('readServer when the first query fails', () => {
  const versionQuery = /^SELECT current_setting\('server_version_num'\)::int AS v$/;
  test('a server that was not reached is not asked a second time (one connect timeout, not two)', async () => {
    const asked: string[] = [];
    const query = <T>(sql: string): Promise<T[]> => {
      asked.push(sql);
      return Promise.reject(new SqlError(sql, '10.0.0.2:5432: timeout expired', undefined));
    };
    await assert.rejects(
      readServer(query, '15', () => ({})),
      /timeout expired/,
    );
    assert.equal(asked.length, 1);
  });

  test('a server that refused the combined query is asked its version, then asked again', async () => {
    const asked: string[] = [];
    const query = <T>(sql: string): Promise<T[]> => {
      asked.push(sql);
      if (asked.length === 1) {
        return Promise.reject(new SqlError(sql, 'column "x" does not exist', '42703'));
      }
      if (versionQuery.test(sql)) {
        return Promise.resolve([{ v: 150018 }] as T[]);
      }
      return Promise.resolve([
        {
          version_num: 150018,
          state: { in_recovery: false, current_lsn: '0/3000000', checkpoint_timeline: 1 },
          timeline: { timeline: 1 },
          replication: [],
          wal_receiver: null,
        },
      ] as T[]);
    };
    const { server } = await readServer(query, '15', () => ({}));
    assert.equal(server.major, '15');
    assert.equal(server.inRecovery, false);
    assert.equal(asked.length, 3);
    assert.match(asked[1] ?? '', versionQuery);
  });
});
