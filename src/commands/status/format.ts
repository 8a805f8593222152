/** formatStatus: PairStatus → the table `status` prints. Pure. */
import { formatBytes } from '../../pg/lsn.js';
import type { PairStatus } from './summarize.js';

export function formatStatus(s: PairStatus): string {
  const withHealth = s.nodes.some((n) => n.health !== undefined);
  const header = [
    '',
    'node',
    'role',
    'timeline',
    'lsn',
    'lag',
    'sync',
    'recipe',
    ...(withHealth ? ['/primary'] : []),
  ];
  const rows = s.nodes.map((n) => [
    n.local ? '*' : ' ',
    `${n.name} (${n.address})`,
    n.role + (n.role === 'standby' ? (n.streaming ? ', streaming' : ', NOT streaming') : ''),
    n.timeline === null ? '-' : String(n.timeline),
    n.lsn ?? '-',
    n.lagBytes === null
      ? '-'
      : `${formatBytes(n.lagBytes)}${n.lagSeconds !== null ? ` / ${n.lagSeconds.toFixed(1)}s` : ''}`,
    n.syncState ?? '-',
    n.recipe,
    ...(withHealth ? [n.health === undefined || n.health === 0 ? 'no answer' : String(n.health)] : []),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const out = [
    `chef-ha pair: ${s.mode}${s.mode === 'streaming' ? (s.synchronous ? ', synchronous' : ', asynchronous') : ''} — ${s.verdict.toUpperCase()}`,
    line(header),
    ...rows.map(line),
  ];
  for (const p of s.problems) {
    out.push(`  ! ${p}`);
  }
  return `${out.join('\n')}\n`;
}
