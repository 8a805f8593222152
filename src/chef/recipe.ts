/**
 * Recognising the installed chef-server postgresql.rb: the upstream original (by git blob id, as the
 * omnibus-chef-server repository stores it), one the site declared original (sha256 in config), chef-ha's
 * override (by its marker line), or something else (refuse: a hand-edited recipe must not be lost).
 */
import { createHash } from 'node:crypto';

/** The marker line every rendering of chef-ha's override carries. */
export const OVERRIDE_MARKER = '# chef-ha recipe override';

/** Abbreviated git blob ids of recipes/postgresql.rb in omnibus-chef-server 11.0.0 … 11.1.7. */
export const UPSTREAM_RECIPE_BLOBS: Readonly<Record<string, string>> = {
  '7928d44b': '11.0.0-11.0.12',
  '799399a9': '11.1.0-11.1.1',
  '7ed451b4': '11.1.2-11.1.3',
  '7cd8bffa': '11.1.4-11.1.7',
};

export type RecipeKind = 'missing' | 'original' | 'override' | 'unknown';

export interface RecipeIdentity {
  readonly kind: RecipeKind;
  readonly sha256?: string;
  /** Which upstream release or "site" when recognised as original. */
  readonly origin?: string;
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function gitBlobId(data: Buffer): string {
  return createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${data.length}\0`), data]))
    .digest('hex');
}

/** Identifies a recipe's bytes. Pure. */
export function identifyRecipe(
  data: Buffer | undefined,
  siteOriginals: readonly string[],
  recordedOriginal: string | undefined,
): RecipeIdentity {
  if (data === undefined) {
    return { kind: 'missing' };
  }
  const sha256 = sha256Hex(data);
  if (data.toString('utf8').includes(OVERRIDE_MARKER)) {
    return { kind: 'override', sha256 };
  }
  const upstream = UPSTREAM_RECIPE_BLOBS[gitBlobId(data).slice(0, 8)];
  if (upstream) {
    return { kind: 'original', sha256, origin: `chef-server ${upstream}` };
  }
  if (siteOriginals.includes(sha256) || recordedOriginal === sha256) {
    return { kind: 'original', sha256, origin: 'site' };
  }
  return { kind: 'unknown', sha256 };
}
