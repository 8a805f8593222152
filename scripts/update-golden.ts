/**
 * Rewrites test/golden from the current templates, on purpose: run it after changing a template, then
 * review `git diff test/golden` before committing.
 *   npx tsx scripts/update-golden.ts
 */
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { GOLDEN_DIR, renderGoldens } from '../test/fakes/golden.js';

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const out: string[] = [];
  for (const entry of entries) {
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) {
      out.push(...(await listFiles(path.join(dir, entry.name), rel)));
    } else {
      out.push(rel);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const renderings = renderGoldens();
  let changed = 0;
  for (const [rel, text] of renderings) {
    const file = path.join(GOLDEN_DIR, rel);
    const old = await readFile(file, 'utf8').catch(() => undefined);
    if (old === text) {
      continue;
    }
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
    changed += 1;
    console.log(`${old === undefined ? 'created' : 'updated'} test/golden/${rel}`);
  }
  for (const rel of await listFiles(GOLDEN_DIR)) {
    if (!renderings.has(rel)) {
      await rm(path.join(GOLDEN_DIR, rel));
      changed += 1;
      console.log(`removed test/golden/${rel} (no longer rendered)`);
    }
  }
  console.log(`${renderings.size} golden files, ${changed} changed`);
}

await main();
