/** PostgreSQL WAL positions ("16/B374D848") as bigints, and byte counts for humans. */

/**
 * Parses an LSN.
 * @throws Error for text that is not an LSN.
 */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m?.[1] || !m[2]) {
    throw new Error(`not a WAL position: "${text}"`);
  }
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

/** Formats a bigint LSN the way PostgreSQL prints it. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Bytes between two LSNs (a - b), never negative. */
export function lsnDiff(a: string, b: string): number {
  const d = parseLsn(a) - parseLsn(b);
  return d > 0n ? Number(d) : 0;
}

/** "48.0 MiB", "512 B". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit] ?? ''}`;
}
