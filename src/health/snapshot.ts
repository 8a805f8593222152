/**
 * The health snapshot: what the health endpoint knows about this node and its peer, taken by the refresh
 * loop (src/health/probe.ts) and read by every request. Requests never wait on PostgreSQL; they answer
 * from the last snapshot, and a snapshot that is too old counts as unknown (fail closed).
 */

/** One server as a probe saw it. */
export interface ServerView {
  readonly inRecovery: boolean;
  /** default_transaction_read_only = on (a fenced old primary). */
  readonly readOnly: boolean;
  readonly timeline: number | null;
  /** Write position of a primary. */
  readonly currentLsn: string | null;
  readonly receiveLsn: string | null;
  readonly replayLsn: string | null;
  /** Seconds since the last replayed transaction (standby). */
  readonly replayAgeS: number | null;
  /** The WAL receiver's status on a standby ('streaming', 'catchup', ...), null when none runs. */
  readonly walReceiver: string | null;
  /** Standbys connected to this server as a primary. */
  readonly standbys: readonly {
    readonly name: string;
    readonly state: string;
    readonly syncState: string;
    readonly lagBytes: number | null;
    readonly lagSeconds: number | null;
  }[];
}

export interface NodeView {
  readonly reachable: boolean;
  readonly error?: string;
  readonly server?: ServerView;
}

export interface HealthSnapshot {
  /** When the probe finished (ms since the epoch). */
  readonly takenAt: number;
  readonly node: string;
  readonly peerName: string;
  readonly mode: 'streaming' | 'londiste';
  readonly local: NodeView;
  readonly peer: NodeView;
  /** The fence record (statePaths.fence); a fenced node never answers 200 on /primary. */
  readonly fenced?: { readonly at: string; readonly reason: string };
  /** The monitor's degraded.json: the primary runs asynchronous since `since`. */
  readonly degraded?: { readonly since: string; readonly lsn: string; readonly standby: string };
}
