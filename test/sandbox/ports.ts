/**
 * Port allocation for a sandbox: one block of PORTS_PER_NODE consecutive ports per node, starting at a
 * random base that is reserved with a lock directory under /tmp (so sandboxes built in parallel never
 * pick the same block) and probed with real binds on 127.0.0.1.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const PORTS_PER_NODE = 10;
const LOCK_ROOT = '/tmp/chef-ha-sandbox-ports';

/** Offsets inside a node's block. */
export const PORT_OFFSET = { postgres: 0, embeddedPostgres: 1, chefApi: 2, health: 3, ssh: 4 } as const;

function canBind(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const srv = createServer();
    srv.once('error', () => {
      resolvePromise(false);
    });
    srv.listen({ port, host, exclusive: true }, () => {
      srv.close(() => {
        resolvePromise(true);
      });
    });
  });
}

function lockDir(base: number): string {
  return join(LOCK_ROOT, String(base));
}

/** The lowest base port; netns.ts derives each sandbox's subnet from base − BASE_PORT_MIN. */
export const BASE_PORT_MIN = 10000;
const LOW = BASE_PORT_MIN;

/**
 * The first port the kernel hands out to outgoing connections. Sandbox ports stay below it: a port in
 * that range that was free when reserved can be taken by any client's connection before a service
 * binds it again (erchef restarted by reconfigure failed with EADDRINUSE that way).
 */
async function ephemeralLow(): Promise<number> {
  const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '');
  const low = Number(text.trim().split(/\s+/)[0]);
  return Number.isInteger(low) && low > LOW + 1000 ? low : 32768;
}

/** Reserves a free block for `nodes` nodes; returns the base port. */
export async function reservePorts(owner: string, nodes: number): Promise<number> {
  await mkdir(LOCK_ROOT, { recursive: true, mode: 0o1777 });
  const span = nodes * PORTS_PER_NODE;
  const high = await ephemeralLow();
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = LOW + Math.floor(Math.random() * Math.floor((high - LOW - span) / 10)) * 10;
    const lock = lockDir(base);
    try {
      await mkdir(lock);
    } catch {
      // taken; reuse only when its owner directory is gone
      const holder = await readFile(join(lock, 'owner'), 'utf8').catch(() => '');
      if (holder !== '' && existsSync(holder)) {
        continue;
      }
      await rm(lock, { recursive: true, force: true });
      continue;
    }
    await writeFile(join(lock, 'owner'), owner);
    await writeFile(join(lock, 'span'), String(span));
    let free = true;
    for (let port = base; port < base + span && free; port++) {
      free = await canBind(port);
    }
    if (free) {
      return base;
    }
    await rm(lock, { recursive: true, force: true });
  }
  throw new Error('could not find a free block of ports on 127.0.0.1');
}

/** Releases the reservation of `base` if `owner` holds it. */
export async function releasePorts(owner: string, base: number): Promise<void> {
  const lock = lockDir(base);
  const holder = await readFile(join(lock, 'owner'), 'utf8').catch(() => '');
  if (holder === owner) {
    await rm(lock, { recursive: true, force: true });
  }
}

/** Releases every reservation whose owner is `owner` (after an `up` killed before it recorded its base). */
export async function releasePortsOwnedBy(owner: string): Promise<void> {
  const { readdir } = await import('node:fs/promises');
  for (const base of await readdir(LOCK_ROOT).catch(() => [] as string[])) {
    const holder = await readFile(join(LOCK_ROOT, base, 'owner'), 'utf8').catch(() => '');
    if (holder === owner) {
      await rm(join(LOCK_ROOT, base), { recursive: true, force: true });
    }
  }
}
