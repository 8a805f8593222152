/**
 * The etcd member of `scripts/sandbox up --proxy --etcd`: Debian's etcd (/usr/bin/etcd, real) on the
 * proxy host (inside its namespace in netns mode), the third voter of automatic failover.
 *
 * One member, its own data dir DIR/proxy/etcd/data, client URL http://<proxy address>:<proxy block + 5>,
 * peer URL http://<proxy address>:<proxy block + 6>; heartbeat (100 ms) and election timeout (1000 ms)
 * are etcd's defaults. Its pid is kept in DIR/proxy/etcd/etcd.pid and `down` stops it by that pid (the
 * last sweep of `down` finds it too, since its command line names DIR/proxy/).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inNetns } from './netns.js';
import { spawnDetached, stopPid, tcpOpen, waitFor } from './proc.js';
import type { SandboxEtcd } from './types.js';

export const ETCD_BIN = '/usr/bin/etcd';

export interface EtcdPlan {
  readonly address: string;
  readonly netns: string | null;
  readonly clientPort: number;
  readonly peerPort: number;
}

export function etcdFiles(sandboxDir: string): { dir: string; data: string; pidFile: string; log: string } {
  const dir = join(sandboxDir, 'proxy', 'etcd');
  return { dir, data: join(dir, 'data'), pidFile: join(dir, 'etcd.pid'), log: join(dir, 'etcd.log') };
}

/** Its health answer ({"health":"true"}) on the client URL. */
async function healthy(endpoint: string): Promise<boolean> {
  try {
    const r = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = await r.text();
    return r.status === 200 && body.includes('true');
  } catch {
    return false;
  }
}

/**
 * Starts the member and waits until it answers healthy. @throws when it does not within 30 s (its log
 * is named).
 */
export async function startEtcd(sandboxDir: string, plan: EtcdPlan): Promise<SandboxEtcd> {
  const f = etcdFiles(sandboxDir);
  await mkdir(f.dir, { recursive: true, mode: 0o755 });
  await rm(f.data, { recursive: true, force: true });
  const client = `http://${plan.address}:${plan.clientPort}`;
  const peer = `http://${plan.address}:${plan.peerPort}`;
  const name = 'proxy';
  const pid = spawnDetached(
    inNetns(plan.netns, [
      ETCD_BIN,
      '--name',
      name,
      '--data-dir',
      f.data,
      '--listen-client-urls',
      client,
      '--advertise-client-urls',
      client,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `${name}=${peer}`,
      '--initial-cluster-state',
      'new',
      '--initial-cluster-token',
      `chef-ha-sandbox-${plan.clientPort}`,
    ]),
    { logFile: f.log, cwd: '/' },
  );
  await writeFile(f.pidFile, `${pid}\n`);
  const up = await waitFor(
    async () => (await tcpOpen(plan.address, plan.clientPort)) && (await healthy(client)),
    30_000,
    200,
  );
  if (!up) {
    throw new Error(`etcd of the proxy host did not answer healthy on ${client} within 30 s; see ${f.log}`);
  }
  return {
    endpoint: client,
    peerUrl: peer,
    dataDir: f.data,
    pidFile: f.pidFile,
    log: f.log,
    netns: plan.netns,
  };
}

/** Stops the member by its recorded pid (only if its command line still names the sandbox). */
export async function stopEtcd(sandboxDir: string): Promise<void> {
  const f = etcdFiles(sandboxDir);
  const pid = Number((await readFile(f.pidFile, 'utf8').catch(() => '')).trim());
  if (pid > 0) {
    // a member frozen by a test ignores SIGTERM until it is continued
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone already
    }
    await stopPid(pid, { mustContain: f.dir, graceMs: 5_000 });
  }
}

/** Sets dcs.etcd.endpoints (and failover.automatic when asked) in a node's chef-ha.json. */
export async function addDcsToConfig(
  configPath: string,
  endpoint: string,
  automatic: boolean,
): Promise<void> {
  const raw = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  raw['dcs'] = { etcd: { endpoints: [endpoint] } };
  if (automatic) {
    raw['failover'] = {
      ...(raw['failover'] ?? {}),
      automatic: true,
    };
  }
  await writeFile(configPath, JSON.stringify(raw, null, 2) + '\n', { mode: 0o644 });
}
