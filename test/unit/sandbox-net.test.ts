import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inNetns, planNetLayout } from '../sandbox/netns.js';
import { renderBridgeConfig } from '../sandbox/proxy.js';
import type { SandboxInfo } from '../sandbox/types.js';

describe('planNetLayout (sandbox netns mode)', () => {
  test('names namespaces and the root link after the base port and numbers hosts on one /24', () => {
    const l = planNetLayout(29140, 2);
    assert.equal(l.bridgeNs, 'chs29140-br');
    assert.equal(l.subnet, '10.203.146.0/24');
    assert.equal(l.hostAddress, '10.203.146.1');
    assert.equal(l.hostLink, 'chs29140h');
    assert.deepEqual(l.proxy, { ns: 'chs29140-proxy', address: '10.203.146.10', bridgePort: 'vb-proxy' });
    assert.deepEqual(l.nodes, [
      { ns: 'chs29140-a', address: '10.203.146.11', bridgePort: 'vb-a' },
      { ns: 'chs29140-b', address: '10.203.146.12', bridgePort: 'vb-b' },
    ]);
  });

  test('gives every base port the port allocator can pick its own subnet', () => {
    const seen = new Set<string>();
    for (let base = 20000; base < 60000; base += 10) {
      seen.add(planNetLayout(base, 2).subnet);
    }
    assert.equal(seen.size, 4000);
  });

  test('keeps every interface name within the kernel limit of 15 characters', () => {
    const l = planNetLayout(59990, 26);
    for (const name of [l.hostLink, l.proxy.bridgePort, ...l.nodes.map((n) => n.bridgePort), 'vb-host']) {
      assert.ok(name.length <= 15, name);
    }
  });

  test('refuses a base port outside the allocator range', () => {
    assert.throws(() => planNetLayout(19990, 2), /outside the range/);
  });
});

test('inNetns prefixes ip netns exec only when there is a namespace', () => {
  assert.deepEqual(inNetns('chs1-a', ['psql', '-c', 'x']), [
    'ip',
    'netns',
    'exec',
    'chs1-a',
    'psql',
    '-c',
    'x',
  ]);
  assert.deepEqual(inNetns(null, ['psql']), ['psql']);
});

test('the proxy bridge config sends both frontends to the node whose Chef API reports a writable database', () => {
  const node = (name: string, address: string, pg: number, api: number): SandboxInfo['nodes'][number] =>
    ({
      name,
      chefApi: `http://${address}:${api}`,
      postgres: { host: address, port: pg },
    }) as SandboxInfo['nodes'][number];
  const info = {
    nodes: [node('chef-a', '10.1.1.11', 100, 102), node('chef-b', '10.1.1.12', 110, 112)],
  } as unknown as SandboxInfo;
  const cfg = renderBridgeConfig(
    info,
    { address: '10.1.1.10', netns: 'x', ports: { postgres: 120, chefApi: 122, stats: 123 } },
    '/s/admin.sock',
  );
  assert.match(cfg, /^frontend chef_api\n {4}bind 10\.1\.1\.10:122$/m);
  assert.match(cfg, /^frontend postgres\n {4}bind 10\.1\.1\.10:120$/m);
  assert.match(cfg, /^ {4}server chef-a 10\.1\.1\.11:100 check port 102 /m);
  assert.match(cfg, /^ {4}server chef-b 10\.1\.1\.12:112 check port 112 /m);
  assert.match(cfg, /http-check expect rstring writable\.:true/);
  assert.match(cfg, /SANDBOX BRIDGE CONFIG/);
});
