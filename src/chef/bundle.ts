/**
 * The join bundle: what a slave needs from its master (DESIGN.md section 2). A gzip tar of
 * `manifest.json`, `etc-chef-server/…` (with modes and owners recorded), `secret/replication.password`
 * and `SHA256SUMS`, which covers every other file. Format knowledge only; I/O is in the commands.
 */
import { createHash } from 'node:crypto';

export const BUNDLE_FORMAT = 'chef-ha-join-bundle/1';

export interface BundleEtcEntry {
  readonly path: string;
  readonly type: 'file' | 'dir';
  readonly mode: number;
  readonly user: string;
  readonly group: string;
}

export interface BundleManifest {
  readonly format: typeof BUNDLE_FORMAT;
  readonly createdAt: string;
  readonly chefHaVersion: string;
  readonly master: { readonly name: string; readonly address: string; readonly port: number };
  /** The node this bundle is for (the master's configured peer). */
  readonly slave: { readonly name: string };
  readonly postgres: {
    readonly major: string;
    readonly versionNum: number;
    readonly systemIdentifier: string;
  };
  readonly replication: {
    readonly mode: 'streaming' | 'londiste';
    readonly synchronous: boolean;
    readonly user: string;
    readonly slotName: string;
  };
  readonly etc: readonly BundleEntryList[];
}

type BundleEntryList = BundleEtcEntry;

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA256SUMS text for files (path → bytes), sorted. */
export function renderSums(files: ReadonlyMap<string, Buffer>): string {
  return `${[...files.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([p, data]) => `${sha256(data)}  ${p}`)
    .join('\n')}\n`;
}

/**
 * Checks SHA256SUMS against the files found in the bundle. Returns the problems (empty when intact).
 * Pure.
 */
export function verifySums(sums: string, files: ReadonlyMap<string, Buffer>): string[] {
  const problems: string[] = [];
  const listed = new Set<string>();
  for (const line of sums.split('\n').filter(Boolean)) {
    const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (!m?.[1] || !m[2]) {
      problems.push(`malformed SHA256SUMS line: ${line.slice(0, 80)}`);
      continue;
    }
    listed.add(m[2]);
    const data = files.get(m[2]);
    if (!data) {
      problems.push(`${m[2]} is listed in SHA256SUMS but missing`);
    } else if (sha256(data) !== m[1]) {
      problems.push(`${m[2]} does not match its checksum`);
    }
  }
  for (const p of files.keys()) {
    if (!listed.has(p)) {
      problems.push(`${p} is not covered by SHA256SUMS`);
    }
  }
  return problems;
}

/**
 * Validates a parsed manifest against this node's configuration. Returns the problems. Pure.
 */
export function checkManifest(
  manifest: unknown,
  expect: { nodeName: string; peerName: string; major: string; mode: string },
): string[] {
  const m = manifest as Partial<BundleManifest> | null;
  if (!m || typeof m !== 'object' || m.format !== BUNDLE_FORMAT) {
    return [
      `not a chef-ha join bundle (format ${JSON.stringify(m?.format ?? null)}, expected "${BUNDLE_FORMAT}")`,
    ];
  }
  const problems: string[] = [];
  if (m.master?.name !== expect.peerName) {
    problems.push(`the bundle comes from "${m.master?.name ?? '?'}" but peer.name is "${expect.peerName}"`);
  }
  if (m.slave?.name !== expect.nodeName) {
    problems.push(`the bundle was made for "${m.slave?.name ?? '?'}" but node.name is "${expect.nodeName}"`);
  }
  if (m.postgres?.major !== expect.major) {
    problems.push(
      `the master runs PostgreSQL ${m.postgres?.major ?? '?'} but this node has PostgreSQL ${expect.major}: streaming replication needs the same major on both`,
    );
  }
  if (m.replication?.mode !== expect.mode) {
    problems.push(
      `the master replicates in "${m.replication?.mode ?? '?'}" mode but replication.mode here is "${expect.mode}"`,
    );
  }
  return problems;
}
