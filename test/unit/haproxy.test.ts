import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executePlan } from '../../src/core/execute.js';
import type { Plan } from '../../src/core/plan.js';
import { StepFailedError } from '../../src/core/errors.js';
import { planFailover } from '../../src/commands/failover/plan.js';
import { decideFailover } from '../../src/commands/failover/decide.js';
import { evaluateCheckGap, evaluateHaproxyWindow } from '../../src/commands/check/index.js';
import { haproxyStateView, pairServers, routeWindow, serversOf } from '../../src/haproxy/view.js';
import { config, standbyConfig } from '../fakes/config.js';
import { commandContext } from '../fakes/context.js';
import { pairFacts } from '../fakes/facts.js';
import { summarizeStatus } from '../../src/commands/status/summarize.js';
import { formatStatus } from '../../src/commands/status/format.js';
import { withHealthAnswers } from '../../src/commands/status/index.js';

const API = { runtimeApi: { address: '10.0.0.9:9999' } };

describe('haproxy view', () => {
  test('names servers after the nodes, sorted, so that both nodes render the same file', () => {
    assert.deepEqual(
      pairServers(config()).map((s) => s.name),
      pairServers(standbyConfig()).map((s) => s.name),
    );
    assert.deepEqual(
      pairServers(config({ haproxy: { chefApiPort: 8443, peerChefApiPort: 9443 } })).map((s) => [
        s.name,
        s.chefApiPort,
      ]),
      [
        ['db1', 8443],
        ['db2', 9443],
      ],
    );
  });

  test('seeds every checked server DOWN in the server-state file', () => {
    const rows = (haproxyStateView(config()) as { rows: { backend: string; server: string }[] }).rows;
    assert.deepEqual(
      rows.map((r) => `${r.backend}/${r.server}`),
      [
        'chef_api/db1',
        'chef_api/db2',
        'postgres_primary/db1',
        'postgres_primary/db2',
        'postgres_readonly/db1',
        'postgres_readonly/db2',
      ],
    );
  });

  test('lists every server of a node that the failover puts in maint', () => {
    assert.deepEqual(serversOf('db1'), [
      'chef_api/db1',
      'postgres_primary/db1',
      'postgres_readonly/db1',
      'postgres_readonly/db1-as-primary',
    ]);
  });
});

describe('the HAProxy routing window', () => {
  test('adds the health refresh, inter and (fall - 1) fastinter, each check up to timeout check', () => {
    const w = routeWindow(
      config({
        health: { refreshMs: 1000, probeTimeoutMs: 800 },
        haproxy: {
          interMs: 2000,
          fastinterMs: 500,
          fall: 3,
          checkTimeoutMs: 1000,
          downinterMs: 250,
          rise: 2,
        },
      }),
    );
    assert.equal(w.oldPrimaryMs, 1000 + 800 + 2000 + 1000 + 2 * (500 + 1000));
    assert.equal(w.newPrimaryMs, 1000 + 800 + 250 + 1000 + 1 * (500 + 1000));
  });

  test('warns when no proxy fence is configured', () => {
    const r = evaluateHaproxyWindow(config({ haproxy: {} }));
    assert.equal(r.level, 'warn');
    assert.match(r.detail, /up to 5\.05 s .*no proxy fence \(haproxy\.runtimeApi\)/);
  });

  test('warns when HAProxy checks too seldom for the health endpoint gap rule', () => {
    assert.equal(evaluateCheckGap(config({ haproxy: {} })).level, 'ok');
    const r = evaluateCheckGap(config({ haproxy: { interMs: 2000 } }));
    assert.equal(r.level, 'warn');
    assert.match(r.detail, /raise health\.recheckAfterGapMs above 4000 ms/);
  });

  test('is fine when the proxy fence is faster than the checks', () => {
    assert.equal(evaluateHaproxyWindow(config({ haproxy: API })).level, 'ok');
  });

  test('warns when the proxy fence may take longer than the checks', () => {
    const r = evaluateHaproxyWindow(
      config({ haproxy: { runtimeApi: { address: 'p:1', timeoutMs: 60_000 } } }),
    );
    assert.equal(r.level, 'warn');
  });

  test('is checked only when the config has a haproxy section', () => {
    assert.equal(config().haproxy.configured, false);
    assert.equal(config({ haproxy: {} }).haproxy.configured, true);
  });
});

describe('failover fences through HAProxy', () => {
  const plan = (
    facts: ReturnType<typeof pairFacts.standbyWithDeadMaster>,
    force = false,
    haproxy = API,
  ): Plan => {
    const c = standbyConfig({ haproxy });
    const d = decideFailover(facts, c, { force });
    assert.ok(d.action === 'promote');
    return planFailover({ facts, decision: d, config: c, primaryConf: '# conf\n', force });
  };

  test('puts the old master in maint in every backend before promoting, required when its PostgreSQL does not answer', () => {
    const p = plan(pairFacts.standbyWithDeadMaster());
    const ids = p.steps.map((s) => s.id);
    assert.ok(ids.indexOf('fence-old-master-in-haproxy') < ids.indexOf('promote'));
    const s = p.steps.find((x) => x.id === 'fence-old-master-in-haproxy');
    assert.ok(s?.kind === 'action');
    assert.deepEqual(s.args, {
      address: '10.0.0.9:9999',
      servers: serversOf('db1'),
      ready: serversOf('db2'),
      timeoutMs: 1000,
      required: true,
    });
  });

  test('makes the proxy fence a warning with --force', () => {
    const s = plan(pairFacts.standbyWithDeadMaster(), true).steps.find(
      (x) => x.id === 'fence-old-master-in-haproxy',
    );
    assert.ok(s?.kind === 'action');
    assert.equal(s.args['required'], false);
  });

  test('makes the proxy fence a warning when the old master is fenced over SQL first', () => {
    const facts = pairFacts.primaryWithStreamingStandby({ lagBytes: 0 });
    const s = plan(facts, true).steps.find((x) => x.id === 'fence-old-master-in-haproxy');
    assert.ok(s?.kind === 'action');
    assert.equal(s.args['required'], false);
  });

  test('has no proxy step without haproxy.runtimeApi', () => {
    const ids = plan(pairFacts.standbyWithDeadMaster(), false, {} as typeof API).steps.map((s) => s.id);
    assert.equal(ids.includes('fence-old-master-in-haproxy'), false);
  });

  const fenceOnly = (required: boolean): Plan => ({
    command: 'failover',
    summary: 'test',
    steps: [
      {
        kind: 'action',
        id: 'fence-old-master-in-haproxy',
        title: 'maint',
        action: 'fence-proxy',
        args: {
          address: 'p:9999',
          servers: ['chef_api/db1', 'postgres_primary/db1'],
          timeoutMs: 500,
          required,
        },
      },
    ],
  });

  test('sends one runtime API line that sets each server to maint and ends its open sessions', async () => {
    const { ctx, haproxy } = commandContext({ config: standbyConfig() });
    await executePlan(ctx, fenceOnly(true), { dryRun: false });
    assert.deepEqual(haproxy.calls, [
      {
        address: 'p:9999',
        line:
          'set server chef_api/db1 state maint; set server postgres_primary/db1 state maint; ' +
          'shutdown sessions server chef_api/db1; shutdown sessions server postgres_primary/db1',
      },
    ]);
  });

  test("failover back after rejoin: the same line takes this node's servers out of the maint an earlier failover left", async () => {
    const { ctx, haproxy } = commandContext({ config: standbyConfig() });
    const p = fenceOnly(true);
    const step = p.steps[0];
    assert.ok(step?.kind === 'action');
    const withReady: Plan = {
      ...p,
      steps: [{ ...step, args: { ...step.args, ready: ['chef_api/db2', 'postgres_primary/db2'] } }],
    };
    await executePlan(ctx, withReady, { dryRun: false });
    assert.deepEqual(haproxy.calls, [
      {
        address: 'p:9999',
        line:
          'set server chef_api/db1 state maint; set server postgres_primary/db1 state maint; ' +
          'shutdown sessions server chef_api/db1; shutdown sessions server postgres_primary/db1; ' +
          'set server chef_api/db2 state ready; set server postgres_primary/db2 state ready',
      },
    ]);
  });

  test('stops the failover when a required proxy fence cannot reach HAProxy', async () => {
    const { ctx, haproxy } = commandContext({ config: standbyConfig() });
    haproxy.down.add('p:9999');
    await assert.rejects(executePlan(ctx, fenceOnly(true), { dryRun: false }), StepFailedError);
  });

  test('stops the failover when HAProxy answers an error to a required fence', async () => {
    const { ctx, haproxy } = commandContext({ config: standbyConfig() });
    haproxy.answer = 'No such server.\n';
    await assert.rejects(executePlan(ctx, fenceOnly(true), { dryRun: false }), /No such server/);
  });

  test('only warns when an optional proxy fence cannot reach HAProxy', async () => {
    const { ctx, haproxy, reporter } = commandContext({ config: standbyConfig() });
    haproxy.down.add('p:9999');
    await executePlan(ctx, fenceOnly(false), { dryRun: false });
    assert.match(JSON.stringify(reporter), /could not fence chef_api\/db1, postgres_primary\/db1 in HAProxy/);
  });

  test('sends nothing in dry-run', async () => {
    const { ctx, haproxy } = commandContext({ config: standbyConfig(), options: { dryRun: true } });
    await executePlan(ctx, fenceOnly(true), { dryRun: true });
    assert.deepEqual(haproxy.calls, []);
  });
});

describe('status shows each node health answer', () => {
  test('adds a /primary column with the code, or "no answer", only when the endpoints were asked', () => {
    const facts = pairFacts.primaryWithStreamingStandby();
    const plain = summarizeStatus(facts, standbyConfig());
    assert.doesNotMatch(formatStatus(plain), /\/primary/);
    const shown = withHealthAnswers(plain, new Map([['db1', 200]]));
    const table = formatStatus(shown);
    assert.match(table, /\/primary/);
    assert.match(table, /db1 \(10\.0\.0\.1\).*200$/m);
    assert.deepEqual(
      shown.nodes.map((n) => [n.name, n.health]),
      [
        ['db2', undefined],
        ['db1', 200],
      ],
    );
    assert.match(
      formatStatus(withHealthAnswers(plain, new Map([['db2', 0]]))),
      /db2 \(10\.0\.0\.2\).*no answer$/m,
    );
  });

  test('asks both health endpoints on /primary', async () => {
    const { ctx, http } = commandContext({ config: standbyConfig() });
    http.statuses.set('http://10.0.0.1:5445/primary', 200);
    http.statuses.set('http://10.0.0.2:5445/primary', 503);
    const { status } = await import('../../src/commands/status/index.js');
    await status(ctx).catch(() => undefined);
    const out = JSON.stringify(ctx.reporter);
    assert.match(out, /"health":200/);
    assert.match(out, /"health":503/);
  });
});
