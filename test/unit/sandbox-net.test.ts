import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inNetns, planNetLayout } from '../sandbox/netns.js';
import { haproxySection } from '../sandbox/proxy.js';

describe('planNetLayout (sandbox netns mode)', () => {
  test('names namespaces and the root link after the base port and numbers hosts on one /24', () => {
    const l = planNetLayout(29140, 2);
    assert.equal(l.bridgeNs, 'chs29140-br');
    assert.equal(l.subnet, '10.207.122.0/24');
    assert.equal(l.hostAddress, '10.207.122.1');
    assert.equal(l.hostLink, 'chs29140h');
    assert.deepEqual(l.proxy, { ns: 'chs29140-proxy', address: '10.207.122.10', bridgePort: 'vb-proxy' });
    assert.deepEqual(l.nodes, [
      { ns: 'chs29140-a', address: '10.207.122.11', bridgePort: 'vb-a' },
      { ns: 'chs29140-b', address: '10.207.122.12', bridgePort: 'vb-b' },
    ]);
  });

  test('gives every base port the port allocator can pick its own subnet', () => {
    const seen = new Set<string>();
    for (let base = 10000; base < 61000; base += 10) {
      seen.add(planNetLayout(base, 2).subnet);
    }
    assert.equal(seen.size, 5100);
  });

  test('keeps every interface name within the kernel limit of 15 characters', () => {
    const l = planNetLayout(59990, 26);
    for (const name of [l.hostLink, l.proxy.bridgePort, ...l.nodes.map((n) => n.bridgePort), 'vb-host']) {
      assert.ok(name.length <= 15, name);
    }
  });

  test('refuses a base port outside the allocator range', () => {
    assert.throws(() => planNetLayout(9990, 2), /outside the range/);
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

test('the haproxy section of a node config binds the proxy frontends and names both Chef API ports', () => {
  const section = haproxySection(
    '/sb',
    {
      address: '10.1.1.10',
      netns: 'x',
      ports: { postgres: 120, postgresReadOnly: 121, chefApi: 122, runtimeApi: 123 },
    },
    102,
    112,
  );
  assert.deepEqual(section, {
    chefApi: { bind: '10.1.1.10', port: 122 },
    postgres: { bind: '10.1.1.10', port: 120 },
    postgresReadOnly: { bind: '10.1.1.10', port: 121 },
    chefApiPort: 102,
    peerChefApiPort: 112,
    socket: '/sb/proxy/admin.sock',
    stateFile: '/sb/proxy/haproxy.state',
    runtimeApi: { address: '10.1.1.10:123' },
  });
});
