// Failover figures from the lab (issue: several managers): 3 managers + 2 workers, per run:
//   a worker host killed      → its replicated tasks running on the other worker
//   a manager host killed     → the workers whose session it held reconnected to another manager
//   the leader's host killed  → the first successful control-API write through another manager
// Clients speak gRPC to the hosts' unix sockets (no CLI start-up in the figures). Prints medians.
// Swarm's defaults for comparison (not run here: see bench/service-converge.ts --failover): 10–20 s
// to elect a leader, ~15 s to notice a dead host.
//   node_modules/.bin/node bench/failover.ts [--runs 3]
import * as grpc from '@grpc/grpc-js';
import { cleanupLabs, Lab, type LabHost } from '../deploy/lab/lab-hosts.ts';
import { formCluster, joinHost, until, waitReady } from '../deploy/lab/lab-cluster.ts';
import { importImage, IMAGE } from '../test/helpers/lab.ts';
import { ControlClient, type ListTasksResponse } from '../proto/gen/gantry/v1/control.ts';
import { type InfoResponse, LocalClient } from '../proto/gen/gantry/v1/local.ts';
import { TaskState } from '../proto/gen/gantry/v1/objects.ts';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 3) || 3;

function control(h: LabHost): ControlClient {
  return new ControlClient(`unix://${h.socket}`, grpc.credentials.createInsecure());
}
function unary<T>(fn: (cb: (err: grpc.ServiceError | null, res: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}
const info = (h: LabHost) => {
  const c = new LocalClient(`unix://${h.socket}`, grpc.credentials.createInsecure());
  return unary<InfoResponse>((cb) => c.info({}, new grpc.Metadata(), { deadline: Date.now() + 1000 }, cb)).finally(() => c.close());
};

async function pollMs(check: () => Promise<boolean>, timeoutMs = 60_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not done in ${timeoutMs} ms`);
}

async function oneRun(): Promise<{ worker: number; reconnect: number; leader: number }> {
  await cleanupLabs();
  const lab = await Lab.up({ hosts: 5 });
  try {
    const m0 = await formCluster(lab, { hosts: [0] });
    await joinHost(m0, lab.host(1), { role: 'manager' });
    await joinHost(m0, lab.host(2), { role: 'manager' });
    await joinHost(m0, lab.host(3));
    await joinHost(m0, lab.host(4));
    await waitReady(m0, lab.hosts);
    await Promise.all(lab.hosts.map((h) => importImage(h)));
    const c0 = control(m0);
    const svc = await unary<{ id: string }>((cb) =>
      c0.createService(
        {
          spec: {
            name: 'web',
            labels: {},
            mode: { $case: 'replicated', value: { replicas: 4 } },
            task: { container: { image: IMAGE, command: ['sleep', '86801'], args: [], env: [], labels: {}, capAdd: [], capDrop: [], mounts: [], dir: '', user: '', hostname: '', stopGracePeriodMs: 1000, stopSignal: '', tty: false, readOnly: false, pidsLimit: 0, imageDigest: '' }, placement: { constraints: ['node.role==worker'], preferences: [], maxReplicas: 0, platforms: [] }, networks: [], runtime: '', forceUpdate: 0 },
          },
          noResolveImage: true,
        },
        cb,
      ),
    );
    const running = async (c: ControlClient, notOn?: string) => {
      const r = await unary<ListTasksResponse>((cb) => c.listTasks({ service: svc.id, node: '', desiredRunningOnly: false }, new grpc.Metadata(), { deadline: Date.now() + 1000 }, cb));
      return r.tasks.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING && t.desiredState === TaskState.TASK_STATE_RUNNING && t.nodeId !== notOn).length;
    };
    await pollMs(async () => (await running(c0)) === 4);

    // a worker host killed → its tasks running on the other worker
    const nodes = await unary<{ nodes: { id: string; description?: { hostname: string } }[] }>((cb) => c0.listNodes({}, cb));
    const victim = lab.host(3);
    const victimId = nodes.nodes.find((n) => n.description?.hostname === victim.name)?.id;
    await victim.kill();
    const worker = await pollMs(async () => (await running(c0, victimId)) === 4);
    await victim.start();
    await waitReady(m0, lab.hosts);

    // a manager host killed → the workers it served reconnected elsewhere
    const leaderAddr = (await Promise.all(lab.hosts.slice(0, 3).map(async (h) => ((await info(h)).isLeader ? h : undefined)))).find(Boolean) as LabHost;
    let served: LabHost[] = [];
    let mgr: LabHost | undefined;
    for (const h of lab.hosts.slice(0, 3).filter((x) => x !== leaderAddr)) {
      const addr = `${h.ip}:4242`;
      const clients = [];
      for (const w of lab.hosts.slice(3)) if ((await info(w)).sessionManager === addr) clients.push(w);
      if (clients.length > 0) {
        mgr = h;
        served = clients;
        break;
      }
    }
    if (!mgr) {
      // no worker on a follower: kill the manager a worker uses, whichever it is
      const w = lab.host(3);
      const addr = (await info(w)).sessionManager;
      mgr = lab.hosts.slice(0, 3).find((h) => `${h.ip}:4242` === addr) as LabHost;
      served = [w];
    }
    const gone = `${mgr.ip}:4242`;
    await mgr.kill();
    const reconnect = await pollMs(async () => (await Promise.all(served.map(async (w) => {
      const s = (await info(w)).sessionManager;
      return s !== '' && s !== gone;
    }))).every(Boolean));
    await mgr.start();
    await waitReady(lab.hosts.find((h) => h !== mgr && h.index < 3) as LabHost, lab.hosts);

    // the leader's host killed → first successful write through another manager
    let leader: LabHost | undefined;
    await until(async () => {
      for (const h of lab.hosts.slice(0, 3)) if ((await info(h).catch(() => undefined))?.isLeader) leader = h;
      return leader !== undefined || 'no leader';
    }, 30_000);
    const survivor = lab.hosts.slice(0, 3).find((h) => h !== leader) as LabHost;
    const cs = control(survivor);
    await leader?.kill();
    let i = 0;
    const leaderMs = await pollMs(async () => {
      i += 1;
      await unary((cb) => cs.updateNode({ ref: survivor.name, version: 0, spec: { name: '', labels: { probe: String(i) }, desiredRole: 1, availability: 0 }, force: false }, new grpc.Metadata(), { deadline: Date.now() + 500 }, cb));
      return true;
    });
    c0.close();
    cs.close();
    return { worker, reconnect, leader: leaderMs };
  } finally {
    await lab.down();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results: { worker: number; reconnect: number; leader: number }[] = [];
for (let r = 0; r < runs; r++) {
  const res = await oneRun();
  console.log(`run ${r + 1}: worker host killed → tasks running elsewhere ${res.worker} ms; manager host killed → its workers reconnected ${res.reconnect} ms; leader killed → write through another manager ${res.leader} ms`);
  results.push(res);
}
console.log(`\nmedian of ${runs} runs (goal: writes < 3000 ms, replacements < 5000 ms):`);
console.log(`  worker host killed → replicated tasks running elsewhere: ${median(results.map((r) => r.worker))} ms   (Swarm: ~15000 ms to notice the host)`);
console.log(`  manager host killed → its workers reconnected:           ${median(results.map((r) => r.reconnect))} ms`);
console.log(`  leader host killed → first control write elsewhere:      ${median(results.map((r) => r.leader))} ms   (Swarm: 10000–20000 ms to elect)`);
