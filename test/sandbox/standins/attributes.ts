/**
 * Stand-in of `ChefServer.generate_secrets` (`chef-server-secrets.json`, generated once and rewritten 0600
 * on every reconfigure; shared/reference/chef-server-11.md sections 1c and 4), and accessors for the node
 * attributes. The attributes themselves (attributes/default.rb, the sandbox host file, chef-server.rb, the
 * secrets) are computed by the chef-solo stand-in (./chef-solo/lib/standin/node.rb), which hands
 * node['chef_server'] back to the TypeScript part of reconfigure as JSON.
 */
import { randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import type { NodePaths } from '../paths.js';

export type AttrValue = string | number | boolean | null | readonly unknown[] | Record<string, unknown>;
export type ServiceAttrs = Record<string, AttrValue>;
export type Attributes = Record<string, ServiceAttrs>;

export interface Secrets {
  rabbitmq: { password: string };
  chef_server_webui: { cookie_secret: string };
  postgresql: { sql_password: string; sql_ro_password: string };
  bookshelf: { access_key_id: string; secret_access_key: string };
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

/** generate_secrets: read chef-server-secrets.json or create it, then rewrite it 0600. */
export async function readOrGenerateSecrets(p: NodePaths): Promise<Secrets> {
  let existing: Partial<Secrets> = {};
  try {
    existing = JSON.parse(await readFile(p.secretsFile, 'utf8')) as Partial<Secrets>;
  } catch {
    existing = {};
  }
  const secrets: Secrets = {
    rabbitmq: { password: existing.rabbitmq?.password ?? hex(50) },
    chef_server_webui: { cookie_secret: existing.chef_server_webui?.cookie_secret ?? hex(50) },
    postgresql: {
      sql_password: existing.postgresql?.sql_password ?? hex(50),
      sql_ro_password: existing.postgresql?.sql_ro_password ?? hex(50),
    },
    bookshelf: {
      access_key_id: existing.bookshelf?.access_key_id ?? hex(20),
      secret_access_key: existing.bookshelf?.secret_access_key ?? hex(40),
    },
  };
  await writeFile(p.secretsFile, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  await chmod(p.secretsFile, 0o600);
  return secrets;
}

/** Reads a string attribute or throws naming it. */
export function str(attrs: Attributes, svc: string, key: string): string {
  const v = attrs[svc]?.[key];
  if (typeof v === 'string') {
    return v;
  }
  if (typeof v === 'number') {
    return String(v);
  }
  throw new Error(`attribute ${svc}['${key}'] is missing or not a string`);
}

/** Reads an optional string attribute. */
export function optStr(attrs: Attributes, svc: string, key: string): string | undefined {
  const v = attrs[svc]?.[key];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

/** Reads an integer attribute or throws naming it. */
export function int(attrs: Attributes, svc: string, key: string): number {
  const v = attrs[svc]?.[key];
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  if (!Number.isInteger(n)) {
    throw new Error(`attribute ${svc}['${key}'] is missing or not an integer`);
  }
  return n;
}

/** Reads a boolean attribute (missing = false). */
export function bool(attrs: Attributes, svc: string, key: string): boolean {
  return attrs[svc]?.[key] === true;
}
