/**
 * Config builders for tests: a valid two-node pair (db1 10.0.0.1, db2 10.0.0.2) run through the real
 * parseConfig, so every default is the one production sees. Overrides are deep-merged raw keys.
 */
import type { Config } from '../../src/core/config.js';
import { parseConfig } from '../../src/core/config.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Raw config keys, every level optional (what a config file may hold). */
export type ConfigOverrides = DeepPartial<Config>;

type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { readonly [K in keyof T]?: DeepPartial<T[K]> }
    : T;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Merges b into a (objects recursively; arrays and scalars replace). */
export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

/** The minimal raw configuration of db1 (the master) whose peer is db2. */
export function rawConfig(overrides: ConfigOverrides = {}): Record<string, unknown> {
  return deepMerge(
    {
      node: { name: 'db1', address: '10.0.0.1' },
      peer: { name: 'db2', address: '10.0.0.2' },
    },
    overrides,
  );
}

/** db1's validated config (db1 is the master in the tests' stories), with overrides. */
export function config(overrides: ConfigOverrides = {}): Config {
  return parseConfig(rawConfig(overrides));
}

/** db2's validated config (the standby's side: node db2, peer db1), with overrides. */
export function standbyConfig(overrides: ConfigOverrides = {}): Config {
  return parseConfig(
    deepMerge(
      {
        node: { name: 'db2', address: '10.0.0.2' },
        peer: { name: 'db1', address: '10.0.0.1' },
      },
      overrides,
    ),
  );
}
