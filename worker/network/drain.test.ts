// NetworkManager.drain: a stopping task leaves the service endpoints before its container stops.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NetworkState } from '../../proto/gen/gantry/v1/network.ts';
import { EndpointMode } from '../../proto/gen/gantry/v1/objects.ts';
import { NetworkManager } from './manager.ts';
import type { Sys } from './sys.ts';

const quiet: Sys = { run: async () => ({ ok: true, out: '', err: '' }) };

function state(endpoints: string[], local: string[]): NetworkState {
  return {
    nodeId: 'node1', nodeAddr: '192.0.2.1', networks: [], localTasks: local,
    services: [{ id: 's1', name: 'web', mode: EndpointMode.ENDPOINT_MODE_VIP, vips: {}, ports: [], tasks: endpoints.map((id) => ({ taskId: id, nodeId: 'node1', addrs: {} })) }],
  };
}

test('network drain: a task that was an endpoint is held until the state without it arrived, then drainMs more', async (t) => {
  const n = new NetworkManager({ nodeId: 'node1', sys: quiet, dns: false, netHelper: false, drainMs: 20 });
  t.after(() => n.close());
  n.setState(state(['a', 'b'], ['a', 'b']));
  let done = false;
  const drained = n.drain('a').then(() => {
    done = true;
  });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done, false, 'still listed as an endpoint: not released');
  n.setState(state(['b'], ['a', 'b']));
  await drained;
  assert.equal(done, true);
});

test('network drain: a task that never was an endpoint is released at once', { timeout: 10_000 }, async (t) => {
  const n = new NetworkManager({ nodeId: 'node1', sys: quiet, dns: false, netHelper: false, drainMs: 60_000 });
  t.after(() => n.close());
  n.setState(state(['b'], ['a', 'b']));
  await n.drain('a'); // would take a minute if it waited
});
