import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planRevert } from '../../src/commands/revert/plan.js';
import { RefusedError } from '../../src/core/errors.js';
import { stepIds } from '../../src/core/plan.js';
import { config } from '../fakes/config.js';
import { localFacts, localPg, recipe, server } from '../fakes/facts.js';

const cfg = config();
const SHA = 'a'.repeat(64);

function setUpPrimary(overrides: Parameters<typeof localFacts>[0] = {}, recorded = true) {
  return localFacts({
    recipe: recipe.override(),
    ...(recorded ? { recordedOriginalSha256: SHA } : {}),
    embedded: { running: false, hasChefDatabase: true, chefData: {} },
    files: {
      chefServerRb:
        'x\n# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)\ny\n# END chef-ha\n',
      chefHaConf: '# conf\n',
    },
    pg: localPg({ database: { sizeBytes: 1 }, slots: [{ slot_name: 'chef_ha_db2', active: false }] }),
    ...overrides,
  });
}

describe('planRevert', () => {
  test('copies the data back, restores the recipe and removes every chef-ha setting on a set-up primary', () => {
    const p = planRevert({ local: setUpPrimary(), config: cfg, keptOriginalSha256: SHA, backupDir: '/b' });
    const todo = p.steps.filter((s) => !s.done).map((s) => s.id);
    for (const id of [
      'start-embedded-postgresql',
      'copy-data-back',
      'stop-embedded-postgresql',
      'restore-original-recipe',
      'remove-chef-server-rb-block',
      'drop-replication-slot',
      'remove-chef-ha-conf',
      'forget-original-record',
      'reconfigure',
    ]) {
      assert.ok(todo.includes(id), `${id} should run`);
    }
    assert.deepEqual(stepIds(p).slice(0, 4), [
      'start-embedded-postgresql',
      'copy-data-back',
      'stop-embedded-postgresql',
      'restore-original-recipe',
    ]);
  });

  test('does not copy data back once chef-server no longer runs on the distribution cluster', () => {
    const local = setUpPrimary({ recipe: recipe.original() }, false);
    const p = planRevert({ local, config: cfg, keptOriginalSha256: SHA, backupDir: '/b' });
    assert.equal(
      p.steps.find((s) => s.id === 'copy-data-back')?.done,
      'chef-server does not run on the distribution cluster',
    );
  });

  test('refuses on a standby', () => {
    const local = setUpPrimary({ pg: localPg({ server: server.standby() }) });
    assert.throws(
      () => planRevert({ local, config: cfg, keptOriginalSha256: SHA, backupDir: '/b' }),
      (e) => e instanceof RefusedError && /is a standby/.test(e.message),
    );
  });

  test('refuses when the kept original recipe is missing or not the recorded one', () => {
    assert.throws(
      () =>
        planRevert({ local: setUpPrimary(), config: cfg, keptOriginalSha256: undefined, backupDir: '/b' }),
      /chef-ha-original is missing/,
    );
    assert.throws(
      () =>
        planRevert({
          local: setUpPrimary(),
          config: cfg,
          keptOriginalSha256: 'b'.repeat(64),
          backupDir: '/b',
        }),
      /does not match the sha256 recorded/,
    );
  });
});
