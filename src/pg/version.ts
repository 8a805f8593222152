/**
 * Every PostgreSQL major-version difference chef-ha knows lives here and nowhere else (STYLE.md B7).
 * Versions are compared as numbers: "9.2" is 902, "15" is 1500.
 */
import { buildConninfo, confString } from './conninfo.js';

/**
 * "9.2" → 902, "15" → 1500.
 * @throws Error for text that is not a major version.
 */
export function majorNumber(version: string): number {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(version.trim());
  if (!m?.[1]) {
    throw new Error(`not a PostgreSQL major version: "${version}"`);
  }
  const first = Number(m[1]);
  return first >= 10 ? first * 100 : first * 100 + Number(m[2] ?? 0);
}

/** The major of a server_version_num (90224 → "9.2", 150018 → "15"). */
export function majorFromVersionNum(num: number): string {
  return num >= 100000
    ? String(Math.floor(num / 10000))
    : `${Math.floor(num / 10000)}.${Math.floor(num / 100) % 100}`;
}

export interface PgFeatures {
  readonly major: string;
  /** recovery.conf (<= 11) or standby.signal plus settings (>= 12). */
  readonly standbySignal: 'recovery.conf' | 'standby.signal';
  readonly walLevel: 'hot_standby' | 'replica';
  readonly walKeep: 'wal_keep_segments' | 'wal_keep_size';
  readonly passwordEncryption: 'md5' | 'scram-sha-256';
  readonly replicationSlots: boolean;
  /** ALTER SYSTEM and postgresql.auto.conf (9.4+). */
  readonly alterSystem: boolean;
  /** pg_control_*() functions and pg_stat_wal_receiver (9.6+). */
  readonly controlFunctions: boolean;
  /** pg_settings.pending_restart (9.5+). */
  readonly pendingRestart: boolean;
  /** pg_stat_replication.replay_lag (10+). */
  readonly lagColumns: boolean;
  readonly walLogHints: boolean;
  readonly pgRewind: boolean;
  /** pg_promote() exists (12+); otherwise pg_ctl promote. */
  readonly sqlPromote: boolean;
  /** GRANT ALTER SYSTEM ON PARAMETER (15+): the peer can fence and switch sync mode without superuser. */
  readonly parameterGrants: boolean;
  /** pg_basebackup argv for WAL and slot. */
  readonly basebackupWalArgs: readonly string[];
  readonly basebackupSlotArg: boolean;
  /** Function and column names: xlog/location before 10, wal/lsn after. */
  readonly fn: {
    readonly currentLsn: string;
    readonly receiveLsn: string;
    readonly replayLsn: string;
    readonly lsnDiff: string;
    readonly replayColumn: string;
    readonly sentColumn: string;
    readonly flushColumn: string;
  };
}

/**
 * What a PostgreSQL major supports.
 * @throws Error for an unsupported major (before 9.2).
 */
export function featuresFor(version: string): PgFeatures {
  const n = majorNumber(version);
  if (n < 902) {
    throw new Error(
      `PostgreSQL ${version} is not supported: streaming replication as chef-ha uses it needs 9.2 or later`,
    );
  }
  const modern = n >= 1000;
  return {
    major: version,
    standbySignal: n >= 1200 ? 'standby.signal' : 'recovery.conf',
    walLevel: n >= 1000 ? 'replica' : 'hot_standby',
    walKeep: n >= 1300 ? 'wal_keep_size' : 'wal_keep_segments',
    passwordEncryption: modern ? 'scram-sha-256' : 'md5',
    replicationSlots: n >= 904,
    alterSystem: n >= 904,
    controlFunctions: n >= 906,
    pendingRestart: n >= 905,
    lagColumns: n >= 1000,
    walLogHints: n >= 904,
    pgRewind: n >= 905,
    sqlPromote: n >= 1200,
    parameterGrants: n >= 1500,
    basebackupWalArgs: n <= 902 ? ['-x'] : ['-X', 'stream'],
    basebackupSlotArg: n >= 906,
    fn: modern
      ? {
          currentLsn: 'pg_current_wal_lsn',
          receiveLsn: 'pg_last_wal_receive_lsn',
          replayLsn: 'pg_last_wal_replay_lsn',
          lsnDiff: 'pg_wal_lsn_diff',
          replayColumn: 'replay_lsn',
          sentColumn: 'sent_lsn',
          flushColumn: 'flush_lsn',
        }
      : {
          currentLsn: 'pg_current_xlog_location',
          receiveLsn: 'pg_last_xlog_receive_location',
          replayLsn: 'pg_last_xlog_replay_location',
          lsnDiff: 'pg_xlog_location_diff',
          replayColumn: 'replay_location',
          sentColumn: 'sent_location',
          flushColumn: 'flush_location',
        },
  };
}

export interface ServerSettingsInput {
  readonly version: string;
  readonly nodeName: string;
  readonly listenAddresses: string;
  readonly walKeepMb: number;
}

/** The settings of chef-ha.conf that every node carries, primary or standby, one line each. */
export function renderServerSettings(input: ServerSettingsInput): string[] {
  const f = featuresFor(input.version);
  const lines = [
    `listen_addresses = ${confString(input.listenAddresses)}`,
    `wal_level = ${f.walLevel}`,
    'max_wal_senders = 10',
  ];
  if (f.replicationSlots) {
    lines.push('max_replication_slots = 10');
  }
  lines.push(
    f.walKeep === 'wal_keep_size'
      ? `wal_keep_size = '${input.walKeepMb}MB'`
      : `wal_keep_segments = ${Math.max(1, Math.ceil(input.walKeepMb / 16))}`,
  );
  lines.push('hot_standby = on');
  if (f.walLogHints) {
    lines.push('wal_log_hints = on');
  }
  // A standby that loses its primary retries every wal_retrieve_retry_interval (5 s by default); a promote
  // that lands in that window waits for it (streaming-lab pitfall 7).
  if (majorNumber(input.version) >= 905) {
    lines.push("wal_retrieve_retry_interval = '1s'");
  }
  return lines;
}

export interface StandbySettingsInput {
  readonly version: string;
  readonly primaryHost: string;
  readonly primaryPort: number;
  readonly user: string;
  readonly passfile: string;
  readonly applicationName: string;
  readonly slotName: string;
}

/** primary_conninfo for a standby; the password comes from the passfile, never inline. */
export function renderPrimaryConninfo(input: StandbySettingsInput): string {
  return buildConninfo([
    ['host', input.primaryHost],
    ['port', input.primaryPort],
    ['user', input.user],
    ['passfile', input.passfile],
    ['application_name', input.applicationName],
    ['connect_timeout', 2],
  ]);
}

export interface StandbyFiles {
  /** Lines to add to chef-ha.conf (12+), or none. */
  readonly confLines: readonly string[];
  /** The file to create in the data directory and its content. */
  readonly dataDirFile: { readonly name: 'standby.signal' | 'recovery.conf'; readonly content: string };
}

/** What makes a data directory start as a standby of the primary, for this version. */
export function renderStandbySettings(input: StandbySettingsInput): StandbyFiles {
  const f = featuresFor(input.version);
  const settings = [`primary_conninfo = ${confString(renderPrimaryConninfo(input))}`];
  if (f.replicationSlots) {
    settings.push(`primary_slot_name = ${confString(input.slotName)}`);
  }
  settings.push("recovery_target_timeline = 'latest'");
  if (f.standbySignal === 'standby.signal') {
    return {
      confLines: settings,
      dataDirFile: { name: 'standby.signal', content: '# managed by chef-ha-ctl: this node is a standby\n' },
    };
  }
  return {
    confLines: [],
    dataDirFile: {
      name: 'recovery.conf',
      content: [
        '# managed by chef-ha-ctl: this node is a standby',
        "standby_mode = 'on'",
        ...settings,
        '',
      ].join('\n'),
    },
  };
}

/** A file that makes a fenced node start read-only (as a standby with nowhere to stream from). */
export function renderFenceFile(version: string): {
  readonly name: 'standby.signal' | 'recovery.conf';
  readonly content: string;
} {
  const f = featuresFor(version);
  const note = '# managed by chef-ha-ctl: this node was fenced after a failover; run `chef-ha-ctl rejoin`';
  return f.standbySignal === 'standby.signal'
    ? { name: 'standby.signal', content: `${note}\n` }
    : { name: 'recovery.conf', content: `${note}\nstandby_mode = 'on'\n` };
}

/** SQL that grants the replication role what the peer needs (monitoring, rewind, fencing, sync switch). */
export function renderReplicationGrants(version: string, role: string): string[] {
  const f = featuresFor(version);
  const r = `"${role.replace(/"/g, '""')}"`;
  const out: string[] = [];
  const n = majorNumber(version);
  if (n >= 1000) {
    out.push(`GRANT pg_monitor TO ${r}`);
    out.push(`GRANT pg_signal_backend TO ${r}`);
  }
  if (n >= 1100) {
    out.push(`GRANT pg_write_server_files TO ${r}`);
    // pg_rewind --source-server with least privilege (pg_rewind documentation).
    out.push(`GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO ${r}`);
    out.push(`GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO ${r}`);
    out.push(`GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO ${r}`);
    out.push(
      `GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO ${r}`,
    );
  }
  if (f.parameterGrants) {
    out.push(
      `GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names, default_transaction_read_only TO ${r}`,
    );
    out.push(`GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO ${r}`);
    // rejoin runs CHECKPOINT on the new primary before pg_rewind (pg_checkpoint exists from 15).
    out.push(`GRANT pg_checkpoint TO ${r}`);
  }
  return out;
}

/** SQL that creates or updates the replication role with a pre-computed password verifier. */
export function renderReplicationRoleSql(role: string, verifier: string, exists: boolean): string {
  const r = `"${role.replace(/"/g, '""')}"`;
  const v = `'${verifier.replace(/'/g, "''")}'`;
  return exists
    ? `ALTER ROLE ${r} WITH LOGIN REPLICATION PASSWORD ${v}`
    : `CREATE ROLE ${r} WITH LOGIN REPLICATION PASSWORD ${v}`;
}

/** argv of pg_basebackup for this version (data dir empty, WAL streamed, fast checkpoint). */
export function renderBasebackupArgv(
  version: string,
  bindir: string,
  opts: { host: string; port: number; user: string; dataDir: string; slotName: string },
): [string, ...string[]] {
  const f = featuresFor(version);
  const argv: [string, ...string[]] = [
    `${bindir}/pg_basebackup`,
    '-h',
    opts.host,
    '-p',
    String(opts.port),
    '-U',
    opts.user,
    '-D',
    opts.dataDir,
    ...f.basebackupWalArgs,
    '--checkpoint=fast',
    '--progress',
    '--no-password',
  ];
  if (f.basebackupSlotArg) {
    argv.push('-S', opts.slotName);
  }
  return argv;
}

/**
 * argv of pg_rewind making `dataDir` follow the server at host:port (least privilege: the replication
 * role holds the four file-function grants pg_rewind's documentation lists; password from PGPASSFILE).
 */
export function renderRewindArgv(
  bindir: string,
  opts: { host: string; port: number; user: string; dataDir: string },
): [string, ...string[]] {
  return [
    `${bindir}/pg_rewind`,
    '-D',
    opts.dataDir,
    `--source-server=${buildConninfo([
      ['host', opts.host],
      ['port', opts.port],
      ['user', opts.user],
      ['dbname', 'postgres'],
      ['connect_timeout', 5],
      ['application_name', 'chef-ha-ctl rejoin'],
    ])}`,
  ];
}
