/**
 * Builders of the facts snapshots planners decide from. Every builder starts from a sensible pair
 * (db1 10.0.0.1 and db2 10.0.0.2 on PostgreSQL 15) and takes overrides, so a test states only what its
 * scenario is about: `pairFacts.primaryWithStreamingStandby({ lagBytes: 48 * MiB })`.
 */
import { createHash } from 'node:crypto';
import type {
  LocalFacts,
  LocalPgFacts,
  PairFacts,
  PeerFacts,
  ReplicationRow,
  ServerFacts,
  WalReceiverRow,
} from '../../src/core/facts.js';
import { slotNameFor } from '../../src/core/config.js';
import { formatLsn, parseLsn } from '../../src/pg/lsn.js';

export const SYSTEM_ID = '7301234567890123456';
export const OTHER_SYSTEM_ID = '7309999999999999999';
export const GATHERED_AT = Date.UTC(2026, 0, 15, 12, 0, 0);
/** Where the primary writes in the stories: 1/0 (4 GiB into the WAL), room for any lag below it. */
export const PRIMARY_LSN = '1/0';
export const RECIPE_PATH = '/opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb';

/** The LSN `bytes` before `lsn`. */
export function lsnMinus(lsn: string, bytes: number): string {
  return formatLsn(parseLsn(lsn) - BigInt(bytes));
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function replicationRow(
  overrides: Partial<ReplicationRow> & { readonly application_name: string },
): ReplicationRow {
  return {
    client_addr: '10.0.0.2',
    state: 'streaming',
    sync_state: 'async',
    sent_lsn: PRIMARY_LSN,
    flush_lsn: PRIMARY_LSN,
    replay_lsn: PRIMARY_LSN,
    lag_bytes: 0,
    replay_lag_s: 0,
    ...overrides,
  };
}

export function walReceiverRow(overrides: Partial<WalReceiverRow> = {}): WalReceiverRow {
  return {
    status: 'streaming',
    sender_host: '10.0.0.1',
    sender_port: 5432,
    received_tli: 1,
    latest_end_lsn: PRIMARY_LSN,
    last_msg_age_s: 0.4,
    ...overrides,
  };
}

/** What a running server says about itself. */
export const server = {
  /** A writable primary (PostgreSQL 15, timeline 1, at PRIMARY_LSN, no standby connected). */
  primary(overrides: Partial<ServerFacts> = {}): ServerFacts {
    return {
      versionNum: 150008,
      major: '15',
      inRecovery: false,
      timeline: 1,
      currentLsn: PRIMARY_LSN,
      receiveLsn: null,
      replayLsn: null,
      replayAgeS: null,
      systemIdentifier: SYSTEM_ID,
      synchronousStandbyNames: '',
      readOnlyDefault: false,
      dataDirectory: '/var/lib/postgresql/15/main',
      replication: [],
      walReceiver: null,
      ...overrides,
    };
  },
  /** A hot standby streaming from its primary, replayed up to PRIMARY_LSN. */
  standby(overrides: Partial<ServerFacts> = {}): ServerFacts {
    return {
      versionNum: 150008,
      major: '15',
      inRecovery: true,
      timeline: 1,
      currentLsn: null,
      receiveLsn: PRIMARY_LSN,
      replayLsn: PRIMARY_LSN,
      replayAgeS: 0.5,
      systemIdentifier: SYSTEM_ID,
      synchronousStandbyNames: '',
      readOnlyDefault: false,
      dataDirectory: '/var/lib/postgresql/15/main',
      replication: [],
      walReceiver: walReceiverRow(),
      ...overrides,
    };
  },
};

/** Identities of the installed chef-server recipe. */
export const recipe = {
  original(): LocalFacts['recipe'] {
    return {
      kind: 'original',
      sha256: sha256('upstream'),
      origin: 'chef-server 11.1.4-11.1.7',
      path: RECIPE_PATH,
    };
  },
  /** The override whose text is `text` (sha256 of that text, as identifyRecipe computes it). */
  override(text = '# chef-ha recipe override\n'): LocalFacts['recipe'] {
    return { kind: 'override', sha256: sha256(text), path: RECIPE_PATH };
  },
  unknown(): LocalFacts['recipe'] {
    return { kind: 'unknown', sha256: sha256('hand-edited'), path: RECIPE_PATH };
  },
  missing(): LocalFacts['recipe'] {
    return { kind: 'missing', path: RECIPE_PATH };
  },
};

/** Settings of a distribution cluster fresh from apt (PostgreSQL 15 defaults). */
export function defaultSettings(): LocalPgFacts['settings'] {
  const s = (setting: string): { setting: string; pendingRestart: boolean } => ({
    setting,
    pendingRestart: false,
  });
  return {
    wal_level: s('replica'),
    max_wal_senders: s('10'),
    max_replication_slots: s('10'),
    wal_log_hints: s('off'),
    hot_standby: s('on'),
    listen_addresses: s('localhost'),
    synchronous_standby_names: s(''),
  };
}

export function localPg(overrides: Partial<LocalPgFacts> = {}): LocalPgFacts {
  if (overrides.running === false) {
    // A stopped server has no server facts: the overrides decide everything else.
    return { ...localPgDown(), ...overrides };
  }
  return {
    running: true,
    server: server.primary(),
    settings: defaultSettings(),
    replicationRoleExists: false,
    slots: [],
    chefData: {},
    ...overrides,
  };
}

/** A stopped local PostgreSQL (psql could not connect). */
export function localPgDown(error = 'psql: error: connection to server on socket failed'): LocalPgFacts {
  return { running: false, error, settings: {}, replicationRoleExists: false, slots: [], chefData: {} };
}

export interface LocalOverrides extends Partial<
  Omit<LocalFacts, 'pg' | 'dataDir' | 'embedded' | 'binaries'>
> {
  readonly pg?: Partial<LocalPgFacts>;
  readonly dataDir?: Partial<LocalFacts['dataDir']>;
  readonly embedded?: Partial<LocalFacts['embedded']>;
  /** Merged into the default (all present): `{ pg_basebackup: false }`. */
  readonly binaries?: Readonly<Record<string, boolean>>;
}

/**
 * A Chef Server 11 node with the distribution's PostgreSQL 15 installed and running (a fresh, writable
 * cluster), the package's original recipe, the embedded PostgreSQL still holding the Chef database,
 * chef-ha not set up (no secret), plenty of disk.
 */
export function localFacts(overrides: LocalOverrides = {}): LocalFacts {
  const { pg, dataDir, embedded, binaries, ...rest } = overrides;
  return {
    recipe: recipe.original(),
    files: {},
    ctlExecutable: true,
    etcDirExists: true,
    freeBytes: 100 * 1024 ** 3,
    secretPresent: false,
    stagingExists: false,
    failoverInProgress: false,
    osUserKnown: true,
    systemdUnitDirExists: false,
    ...rest,
    pg: localPg(pg),
    dataDir: {
      exists: true,
      empty: false,
      pgVersion: '15',
      standbySignal: false,
      recoveryConf: false,
      ...dataDir,
    },
    embedded: { running: true, hasChefDatabase: true, chefData: {}, ...embedded },
    binaries: {
      pg_ctl: true,
      pg_basebackup: true,
      pg_rewind: true,
      psql: true,
      pg_dump: true,
      pg_restore: true,
      ...binaries,
    },
  };
}

/** The peer as seen over TCP. */
export const peerFacts = {
  unreachable(error = 'connect ECONNREFUSED 10.0.0.1:5432'): PeerFacts {
    return { reachable: false, error, slots: [] };
  },
  /** No replication secret yet: gatherPeerFacts does not even try. */
  notSetUp(): PeerFacts {
    return {
      reachable: false,
      error: 'no replication secret yet (run setup-master or setup-slave first)',
      slots: [],
    };
  },
  primary(overrides: Partial<ServerFacts> = {}): PeerFacts {
    return { reachable: true, server: server.primary(overrides), slots: [] };
  },
  standby(overrides: Partial<ServerFacts> = {}): PeerFacts {
    return { reachable: true, server: server.standby(overrides), slots: [] };
  },
};

export interface StreamingPairOptions {
  /** How far the standby's replay is behind the primary's current LSN. */
  readonly lagBytes?: number;
  /** The standby's sync_state as the primary reports it. */
  readonly syncState?: 'sync' | 'async' | 'potential';
  /** The standby's walsender state on the primary ('streaming', 'catchup', …). */
  readonly state?: string;
  /** Which node the facts are gathered on: the standby (default, where failover runs) or the primary. */
  readonly local?: 'standby' | 'primary';
  readonly primaryName?: string;
  readonly standbyName?: string;
  /** Overrides for the local facts (recipe, fence, …). */
  readonly localOverrides?: LocalOverrides;
}

function pair(local: LocalFacts, peer: PeerFacts): PairFacts {
  return { local, peer, gatheredAt: GATHERED_AT };
}

/** Facts of a whole pair, from one node's point of view. */
export const pairFacts = {
  /** db1 before setup-master: original recipe, Chef data in the embedded cluster, no secret, peer not set up. */
  freshMaster(local: LocalOverrides = {}): PairFacts {
    return pair(localFacts(local), peerFacts.notSetUp());
  },

  /**
   * A primary (db1 at PRIMARY_LSN) with db2 streaming from it `lagBytes` behind; seen from the standby by
   * default (local: 'standby'), or from the primary.
   */
  primaryWithStreamingStandby(options: StreamingPairOptions = {}): PairFacts {
    const lag = options.lagBytes ?? 0;
    const standbyName = options.standbyName ?? 'db2';
    const replay = lsnMinus(PRIMARY_LSN, lag);
    const row = replicationRow({
      application_name: slotNameFor(standbyName),
      state: options.state ?? 'streaming',
      sync_state: options.syncState ?? 'async',
      replay_lsn: replay,
      flush_lsn: replay,
      lag_bytes: lag,
      replay_lag_s: lag > 0 ? 2.5 : 0,
    });
    const primary = server.primary({ replication: [row] });
    const standby = server.standby({ receiveLsn: replay, replayLsn: replay });
    const slots = [{ slot_name: slotNameFor(standbyName), active: true }];
    if ((options.local ?? 'standby') === 'standby') {
      return pair(
        localFacts({
          recipe: recipe.override(),
          secretPresent: true,
          embedded: { running: false, hasChefDatabase: false },
          dataDir: { standbySignal: true },
          ...options.localOverrides,
          pg: { server: standby, replicationRoleExists: true, ...options.localOverrides?.pg },
        }),
        { reachable: true, server: primary, slots },
      );
    }
    return pair(
      localFacts({
        recipe: recipe.override(),
        secretPresent: true,
        embedded: { running: false, hasChefDatabase: false },
        ...options.localOverrides,
        pg: { server: primary, slots, replicationRoleExists: true, ...options.localOverrides?.pg },
      }),
      { reachable: true, server: standby, slots: [] },
    );
  },

  /** db2, a standby that last heard from db1 `lastMessageAgeS` ago; db1's PostgreSQL does not answer. */
  standbyWithDeadMaster(
    options: {
      readonly replayLsn?: string;
      readonly lastMessageAgeS?: number | null;
      readonly error?: string;
    } = {},
  ): PairFacts {
    const replay = options.replayLsn ?? PRIMARY_LSN;
    return pair(
      localFacts({
        recipe: recipe.override(),
        secretPresent: true,
        embedded: { running: false, hasChefDatabase: false },
        dataDir: { standbySignal: true },
        pg: {
          replicationRoleExists: true,
          server: server.standby({
            receiveLsn: replay,
            replayLsn: replay,
            walReceiver:
              options.lastMessageAgeS === null
                ? null
                : walReceiverRow({ status: 'waiting', last_msg_age_s: options.lastMessageAgeS ?? 12.3 }),
          }),
        },
      }),
      peerFacts.unreachable(options.error),
    );
  },

  /**
   * db2 before setup-slave: a fresh Chef Server (bootstrap rows only), its distribution PostgreSQL
   * running as a new writable cluster; db1 answers as the primary of the bundle's cluster.
   */
  freshSlave(local: LocalOverrides = {}, peer: Partial<ServerFacts> = {}): PairFacts {
    return pair(
      localFacts({
        embedded: { running: true, hasChefDatabase: true, chefData: {} },
        ...local,
        pg:
          local.pg?.running === false
            ? local.pg
            : { server: server.primary({ systemIdentifier: OTHER_SYSTEM_ID }), ...local.pg },
      }),
      peerFacts.primary(peer),
    );
  },
};
