/** Quoting for libpq conninfo strings, postgresql.conf values and SQL identifiers/literals. */

/** Quotes a conninfo value: single quotes, with backslash and quote escaped. */
export function conninfoValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** Builds a conninfo string from ordered pairs, skipping undefined values. */
export function buildConninfo(pairs: readonly (readonly [string, string | number | undefined])[]): string {
  return pairs
    .filter((p): p is readonly [string, string | number] => p[1] !== undefined)
    .map(([k, v]) => `${k}=${conninfoValue(String(v))}`)
    .join(' ');
}

/** Quotes a postgresql.conf string value (single quotes doubled). */
export function confString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes an SQL string literal (standard_conforming_strings on). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
