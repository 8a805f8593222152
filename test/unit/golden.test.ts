import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { GOLDEN_DIR, GOLDEN_VERSIONS, REPO_ROOT, goldenTemplates, renderGoldens } from '../fakes/golden.js';
import { createTemplates } from '../../src/ports/templates.js';

const HINT =
  'if the change is intended, run `npx tsx scripts/update-golden.ts` and review `git diff test/golden`';

function goldenFiles(dir = GOLDEN_DIR, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    return entry.isDirectory() ? goldenFiles(path.join(dir, entry.name), rel) : [rel];
  });
}

const renderings = renderGoldens();

describe('golden renderings', () => {
  for (const [rel, text] of renderings) {
    test(`renders test/golden/${rel} unchanged`, () => {
      let expected: string;
      try {
        expected = readFileSync(path.join(GOLDEN_DIR, rel), 'utf8');
      } catch {
        assert.fail(`test/golden/${rel} is missing; ${HINT}`);
      }
      assert.equal(text, expected, `test/golden/${rel} differs from the rendering; ${HINT}`);
    });
  }

  test('has no golden file that nothing renders any more', () => {
    assert.deepEqual(
      goldenFiles().filter((rel) => !renderings.has(rel)),
      [],
      `stale golden files; ${HINT}`,
    );
  });

  test('covers every template for each version: conf as primary and standby, standby file, pg_hba, recipe, chef-server.rb, guard drop-in', () => {
    for (const version of GOLDEN_VERSIONS) {
      const names = [...renderings.keys()].filter((rel) => rel.startsWith(`${version}/`)).sort();
      const standbyFile = version === '9.2' ? 'recovery.conf' : 'standby.signal';
      assert.deepEqual(
        names,
        [
          'chef-ha.primary.conf',
          'chef-ha.standby.conf',
          'chef-server.rb',
          'pg_hba-block.primary.conf',
          'pg_hba-block.standby.conf',
          'postgresql.rb',
          'postgresql-guard.conf',
          standbyFile,
        ]
          .map((n) => `${version}/${n}`)
          .sort(),
      );
    }
  });

  test('uses md5 in pg_hba for 9.2 and scram-sha-256 for 12 and 15', () => {
    assert.match(renderings.get('9.2/pg_hba-block.primary.conf') ?? '', /10\.0\.0\.2\/32 {3}md5$/m);
    assert.match(renderings.get('12/pg_hba-block.primary.conf') ?? '', /10\.0\.0\.2\/32 {3}scram-sha-256$/m);
    assert.match(renderings.get('15/pg_hba-block.standby.conf') ?? '', /10\.0\.0\.1\/32 {3}scram-sha-256$/m);
  });

  test('starts every rendered PostgreSQL file with the managed-by header', () => {
    for (const [rel, text] of renderings) {
      if ((rel.endsWith('.conf') && !rel.includes('pg_hba')) || rel.endsWith('.signal')) {
        assert.match(text, /^# managed by chef-ha-ctl/, rel);
      }
    }
  });
});

describe('the templates port', () => {
  test('does not HTML-escape values (conninfo strings keep = and quotes)', () => {
    const text = renderings.get('15/chef-ha.standby.conf') ?? '';
    assert.match(text, /^primary_conninfo = 'host=''10\.0\.0\.1'' port=''5432''/m);
    assert.doesNotMatch(text, /&#x3D;|&#x27;|&amp;/);
  });

  test('refuses a view that lacks a variable (strict mode)', () => {
    const templates = createTemplates(REPO_ROOT);
    assert.throws(
      () => templates.render('templates/pg_hba-block.hbs', { peerName: 'db2' }),
      /"user" not defined/,
    );
  });

  test('pins only chefHaVersion in the golden view', () => {
    const text = goldenTemplates().render('templates/chef-ha.conf.hbs', {
      chefHaVersion: '9.9.9',
      nodeName: 'n',
      role: 'primary',
      pgVersion: '15',
      mode: 'streaming',
      lines: ['a = 1'],
    });
    assert.equal(
      text,
      '# managed by chef-ha-ctl 0.0.0-golden: do not edit, `chef-ha-ctl setup-*` rewrites this file\n# node n (primary), PostgreSQL 15, replication streaming\na = 1\n',
    );
  });
});
