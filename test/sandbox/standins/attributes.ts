/**
 * Stand-in of what `chef-server-ctl reconfigure` computes before the recipes run: the node attributes
 * (attributes/default.rb defaults, chef-server 11.1.7, shared/reference/chef-server-11.md section 1c),
 * overridden by `/etc/chef-server/chef-server.rb` (Mixlib::Config assignment lines), and the generated
 * secrets of `ChefServer.generate_secrets` (`chef-server-secrets.json`, rewritten 0600 on every run).
 * Only the simple `service['key'] = value` form is understood (strings, integers, floats, booleans,
 * arrays of strings); anything else in chef-server.rb is ignored.
 */
import { randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import type { NodePaths } from '../paths.js';

export type AttrValue = string | number | boolean | readonly string[];
export type ServiceAttrs = Record<string, AttrValue>;
export type Attributes = Record<string, ServiceAttrs>;

export interface Secrets {
  rabbitmq: { password: string };
  chef_server_webui: { cookie_secret: string };
  postgresql: { sql_password: string; sql_ro_password: string };
  bookshelf: { access_key_id: string; secret_access_key: string };
}

/** Defaults of the attributes the stand-ins read, re-rooted under the node root. */
export function defaultAttributes(p: NodePaths): Attributes {
  return {
    postgresql: {
      enable: true,
      ha: false,
      dir: p.embeddedPgDir,
      data_dir: p.embeddedDataDir,
      log_directory: p.embeddedLogDir,
      svlogd_size: 1000000,
      svlogd_num: 10,
      username: 'opscode-pgsql',
      shell: '/bin/sh',
      home: p.embeddedPgDir,
      user_path: `${p.embeddedBin}:${p.omnibusDir}/bin:$PATH`,
      sql_user: 'opscode_chef',
      sql_password: 'snakepliskin',
      sql_ro_user: 'opscode_chef_ro',
      sql_ro_password: 'shmunzeltazzen',
      vip: '127.0.0.1',
      port: 5432,
      // 11.1.x set_default_listen_interface: ChefServer["postgresql"]["listen_address"] ||= "0.0.0.0"
      listen_address: '0.0.0.0',
      max_connections: 200,
      md5_auth_cidr_addresses: ['127.0.0.1/32', '::1/128'],
      // stand-in: small fixed sizes instead of memory.total/4 and memory.total/2
      shared_buffers: '32MB',
      work_mem: '8MB',
      effective_cache_size: '128MB',
      checkpoint_segments: 10,
      checkpoint_timeout: '5min',
      checkpoint_completion_target: 0.9,
      checkpoint_warning: '30s',
    },
    erchef: { enable: true, listen: '127.0.0.1', port: 8000 },
    bootstrap: { enable: true },
    rabbitmq: { enable: true },
    'chef-solr': { enable: true },
    'chef-expander': { enable: true },
    bookshelf: { enable: true },
    'chef-server-webui': {
      enable: true,
      web_ui_admin_user_name: 'admin',
      web_ui_admin_default_password: 'p@ssw0rd1',
    },
    nginx: { enable: true },
  };
}

const ASSIGNMENT = /^\s*([a-z_][a-z0-9_]*)\[['"]([A-Za-z0-9_]+)['"]\]\s*=\s*(.+?)\s*$/;

/** Parses one Ruby literal of the simple kinds chef-server.rb uses; undefined when not understood. */
export function parseRubyLiteral(text: string): AttrValue | undefined {
  const t = text.replace(/\s+#.*$/, '').trim();
  let m = /^"((?:[^"\\]|\\.)*)"$/.exec(t) ?? /^'((?:[^'\\]|\\.)*)'$/.exec(t);
  if (m?.[1] !== undefined) {
    return m[1].replace(/\\(["'\\])/g, '$1');
  }
  if (t === 'true' || t === 'false') {
    return t === 'true';
  }
  if (/^-?\d+(_\d+)*$/.test(t)) {
    return Number(t.replace(/_/g, ''));
  }
  if (/^-?\d+\.\d+$/.test(t)) {
    return Number(t);
  }
  m = /^\[(.*)\]$/.exec(t);
  if (m?.[1] !== undefined) {
    const items = m[1]
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const values = items.map((i) => parseRubyLiteral(i));
    if (values.every((v): v is string => typeof v === 'string')) {
      return values;
    }
  }
  return undefined;
}

/** `service['key'] = value` assignments of a chef-server.rb text, in order (later lines win). */
export function parseChefServerRb(text: string): { service: string; key: string; value: AttrValue }[] {
  const out: { service: string; key: string; value: AttrValue }[] = [];
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line)) {
      continue;
    }
    const m = ASSIGNMENT.exec(line);
    if (m?.[1] === undefined || m[2] === undefined || m[3] === undefined) {
      continue;
    }
    const value = parseRubyLiteral(m[3]);
    if (value !== undefined) {
      // Mixlib::Config service names use "_" where runit names use "-" (chef_solr -> chef-solr)
      out.push({ service: m[1].replace(/_/g, '-'), key: m[2], value });
    }
  }
  return out;
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

/**
 * The merged attributes: defaults < the sandbox host file < chef-server.rb < secrets (as
 * ChefServer.generate_config does). The host file is a stand-in detail: several "hosts" share one
 * machine here, so each needs its own erchef port and embedded-PostgreSQL port; on real hosts those are
 * the same defaults on both servers. Keeping them out of chef-server.rb matters because setup-slave
 * copies the master's chef-server.rb, as the guides do.
 */
export async function readAttributes(p: NodePaths, secrets: Secrets): Promise<Attributes> {
  const attrs = defaultAttributes(p);
  for (const file of [p.hostRb, p.chefServerRb]) {
    let rb = '';
    try {
      rb = await readFile(file, 'utf8');
    } catch {
      rb = '';
    }
    for (const { service, key, value } of parseChefServerRb(rb)) {
      const svc = (attrs[service] ??= {});
      svc[key] = value;
    }
  }
  const pg = attrs['postgresql'] ?? {};
  pg['sql_password'] = secrets.postgresql.sql_password;
  pg['sql_ro_password'] = secrets.postgresql.sql_ro_password;
  return attrs;
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
