/**
 * Parsers for what PostgreSQL's own tools print about a data directory and its WAL: `pg_controldata`,
 * timeline history files, `pg_waldump --stats` and `pg_rewind`. Pure: rejoin and switchover read a
 * stopped cluster through these.
 */
import { formatLsn, parseLsn } from './lsn.js';

/** What `pg_controldata` says about a data directory (fields chef-ha uses). */
export interface ControlData {
  /** "in production", "shut down", "shut down in recovery", "in archive recovery", … */
  readonly state: string;
  readonly systemIdentifier: string | undefined;
  /** Latest checkpoint location: after a clean shutdown, the shutdown checkpoint, the end of its WAL. */
  readonly checkpointLsn: string | undefined;
  readonly redoLsn: string | undefined;
  readonly timeline: number | undefined;
  readonly walLogHints: boolean;
  /** Data page checksum version (0: no checksums). */
  readonly checksums: boolean;
  readonly segmentBytes: number;
}

/** Parses `pg_controldata` output (C locale). */
export function parseControlData(text: string): ControlData {
  const field = (name: string): string | undefined => {
    const re = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\']/g, '\\$&')}:\\s*(.*)$`, 'm');
    return re.exec(text)?.[1]?.trim();
  };
  const num = (v: string | undefined): number | undefined =>
    v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  return {
    state: field('Database cluster state') ?? 'unknown',
    systemIdentifier: field('Database system identifier'),
    checkpointLsn: field('Latest checkpoint location'),
    redoLsn: field("Latest checkpoint's REDO location"),
    timeline: num(field("Latest checkpoint's TimeLineID")),
    walLogHints: field('wal_log_hints setting') === 'on',
    checksums: (num(field('Data page checksum version')) ?? 0) > 0,
    segmentBytes: num(field('Bytes per WAL segment')) ?? 16 * 1024 * 1024,
  };
}

/** Whether a control-data state is a clean shutdown (what a switchover needs before promoting). */
export function isCleanShutdown(data: ControlData): boolean {
  return data.state === 'shut down' || data.state === 'shut down in recovery';
}

/** One line of a timeline history file: timeline `parent` ended at `switchLsn`. */
export interface HistoryEntry {
  readonly parent: number;
  readonly switchLsn: string;
}

/** Parses a `0000000N.history` file (`parentTLI <tab> switchpoint <tab> reason`). */
export function parseHistory(text: string): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (m?.[1] && m[2]) {
      out.push({ parent: Number(m[1]), switchLsn: m[2].toUpperCase() });
    }
  }
  return out;
}

/** The history file name of a timeline ("00000002.history"). */
export function historyFileName(timeline: number): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

/** The WAL segment file name holding `lsn` on `timeline`. */
export function walFileName(timeline: number, lsn: string, segmentBytes: number): string {
  const pos = parseLsn(lsn);
  const seg = pos / BigInt(segmentBytes);
  const perId = 0x100000000n / BigInt(segmentBytes);
  const hex = (n: bigint | number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(seg / perId)}${hex(seg % perId)}`;
}

/**
 * The WAL segment files of `names` that can hold records at or after `lsn` on `timeline`: that
 * timeline's segments from the one holding `lsn`, and every later timeline's (with `.partial` files).
 */
export function walFilesFrom(
  names: readonly string[],
  timeline: number,
  lsn: string,
  segmentBytes: number,
): string[] {
  const first = walFileName(timeline, lsn, segmentBytes);
  return names
    .filter((n) => /^[0-9A-F]{24}(\.partial)?$/.test(n))
    .filter((n) => {
      const tli = parseInt(n.slice(0, 8), 16);
      return tli > timeline || (tli === timeline && n.slice(0, 24) >= first.slice(0, 24));
    })
    .sort();
}

/** What `pg_waldump --stats` found from a start point: records read and where the WAL ends. */
export interface WaldumpSummary {
  readonly records: number | undefined;
  readonly endLsn: string | undefined;
}

/** Parses `pg_waldump --stats` output (stdout and stderr together). */
export function parseWaldump(text: string): WaldumpSummary {
  const total = /^Total\s+(\d+)/m.exec(text);
  // "error in WAL record at 0/1526058: invalid record length at 0/15261F0: wanted 24, got 0": the WAL
  // ends where reading failed; the last position printed on that line is it.
  const errLine = text
    .split('\n')
    .find((l) => /error in WAL record at|could not find a valid record/.test(l));
  const lsns = errLine ? [...errLine.matchAll(/([0-9A-F]+\/[0-9A-F]+)/g)].map((m) => m[1] ?? '') : [];
  const endLsn = lsns.length > 0 ? lsns[lsns.length - 1] : undefined;
  return { records: total?.[1] ? Number(total[1]) : undefined, endLsn: endLsn || undefined };
}

/** What pg_rewind reported: where the servers diverged, or that nothing needed rewinding. */
export interface RewindSummary {
  readonly divergedAt?: string;
  readonly timeline?: number;
  readonly noRewindRequired: boolean;
}

/** Parses pg_rewind's messages. */
export function parseRewindOutput(text: string): RewindSummary {
  const m = /servers diverged at WAL location ([0-9A-F]+\/[0-9A-F]+) on timeline (\d+)/.exec(text);
  return {
    ...(m?.[1] ? { divergedAt: m[1] } : {}),
    ...(m?.[2] ? { timeline: Number(m[2]) } : {}),
    noRewindRequired: /no rewind required/.test(text),
  };
}

/** The larger of two LSNs. */
export function maxLsn(a: string, b: string): string {
  return formatLsn(parseLsn(a) > parseLsn(b) ? parseLsn(a) : parseLsn(b));
}
