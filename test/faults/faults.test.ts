// The fault suite: 3 managers and 3 workers run a replicated and a global service while a bounded,
// seeded run of random faults hits them — SIGKILL of a manager's gantryd, of its etcd member, of a
// worker's gantryd, of a container; a partition between two hosts; a gantryd paused with SIGSTOP.
// During the run no slot may ever have two tasks that should run and do (sampled from the store);
// afterwards every service converges within a bound, no container runs without a task, and every
// manager reports the same state. Replay a failure with GANTRY_FAULT_SEED=<the printed seed>.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { cleanupLabs, Lab, type LabHost } from '../../deploy/lab/lab-hosts.ts';
import { ControlClient, type ListTasksResponse } from '../../proto/gen/gantry/v1/control.ts';
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { clusterSkipReason, createSleeper, formCluster, importImage, joinHost, sleepersByHost, until, waitReady } from '../helpers/lab.ts';

const FAULTS = Number(process.env.GANTRY_FAULTS ?? 8);
const SEED = Number(process.env.GANTRY_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a small seeded PRNG, so a run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function listTasks(h: LabHost): Promise<ListTasksResponse> {
  const c = new ControlClient(`unix://${h.socket}`, grpc.credentials.createInsecure());
  return new Promise<ListTasksResponse>((resolve, reject) =>
    c.listTasks({ service: '', node: '', desiredRunningOnly: false }, new grpc.Metadata(), { deadline: Date.now() + 1500 }, (err, res) => (err ? reject(err) : resolve(res))),
  ).finally(() => c.close());
}

const RUNNING = TaskState.TASK_STATE_RUNNING;

describe('faults', { skip: clusterSkipReason(), concurrency: 1, timeout: 900_000 }, () => {
  let lab: Lab;
  const rand = prng(SEED);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  before(async () => {
    process.stdout.write(`# fault suite seed ${SEED} (replay: GANTRY_FAULT_SEED=${SEED})\n`);
    await cleanupLabs();
    lab = await Lab.up({ hosts: 6 });
    const m = await formCluster(lab, { hosts: [0] });
    await joinHost(m, lab.host(1), { role: 'manager' });
    await joinHost(m, lab.host(2), { role: 'manager' });
    for (const i of [3, 4, 5]) await joinHost(m, lab.host(i));
    await waitReady(m, lab.hosts);
    await Promise.all(lab.hosts.map((h) => importImage(h)));
    await createSleeper(m, 'rep', '86701', ['--replicas', '6', '--restart-delay', '1s']);
    await createSleeper(m, 'glob', '86702', ['--mode', 'global', '--restart-delay', '1s']);
  });
  after(async () => {
    await lab?.down();
  });

  test(`faults: ${FAULTS} random faults (seed ${SEED}); no slot runs twice, then everything converges and managers agree`, async (t) => {
    const managers = lab.hosts.slice(0, 3);
    const workers = lab.hosts.slice(3);
    const reachable = () => managers.filter((h) => h.running());
    const violations: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const h of reachable()) {
          const r = await listTasks(h).catch(() => undefined);
          if (!r) continue;
          const live = r.tasks.filter((t) => t.status?.state === RUNNING && t.desiredState === RUNNING && t.slot > 0);
          const seen = new Map<string, string>();
          for (const t of live) {
            const key = `${t.serviceId}/${t.slot}/${t.specVersion}`;
            if (seen.has(key)) violations.push(`slot ${t.serviceName}.${t.slot} had two running tasks (${seen.get(key)}, ${t.id})`);
            seen.set(key, t.id);
          }
          break;
        }
        await new Promise((res) => setTimeout(res, 300));
      }
    })();

    const stopSampling = async () => {
      sampling = false;
      await sampler;
    };
    t.after(stopSampling); // a failed step must not leave the sampler running
    const log: string[] = [];
    const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
    const gantryd = (h: LabHost) => h.processes((a) => a.some((x) => x.endsWith('cli/gantryd.ts')));
    for (let i = 0; i < FAULTS; i++) {
      const kind = pick(['kill-manager-gantryd', 'kill-etcd', 'kill-worker-gantryd', 'kill-container', 'partition', 'pause']);
      const hold = 1500 + Math.floor(rand() * 3000);
      switch (kind) {
        case 'kill-manager-gantryd':
        case 'kill-worker-gantryd': {
          const h = pick(kind === 'kill-manager-gantryd' ? managers : workers);
          for (const p of gantryd(h)) process.kill(p.pid, 'SIGKILL');
          log.push(`${kind} ${h.name}`);
          await sleep(hold);
          await h.start();
          break;
        }
        case 'kill-etcd': {
          const h = pick(managers);
          const etcd = h.processes((a) => /(^|\/)etcd$/.test(a[0] ?? ''));
          for (const p of etcd) process.kill(p.pid, 'SIGKILL');
          log.push(`kill-etcd ${h.name} (${etcd.length})`);
          await sleep(hold);
          break;
        }
        case 'kill-container': {
          const h = pick(workers);
          const victims = h.processes((a) => (a[0] ?? '').endsWith('sleep') && /^8670[12]$/.test(a[1] ?? ''));
          if (victims.length > 0) process.kill(pick(victims).pid, 'SIGKILL');
          log.push(`kill-container on ${h.name} (${victims.length} candidates)`);
          await sleep(hold);
          break;
        }
        case 'partition': {
          const a = pick(lab.hosts);
          const b = pick(lab.hosts.filter((x) => x !== a));
          await lab.partition(a.index, b.index);
          log.push(`partition ${a.name} | ${b.name}`);
          await sleep(hold);
          await lab.heal();
          break;
        }
        case 'pause': {
          const h = pick(lab.hosts);
          const ps = gantryd(h);
          for (const p of ps) process.kill(p.pid, 'SIGSTOP');
          log.push(`pause ${h.name}`);
          await sleep(hold);
          for (const p of ps) process.kill(p.pid, 'SIGCONT');
          break;
        }
        default:
          throw new Error(`unknown fault ${kind}`);
      }
      await sleep(500 + Math.floor(rand() * 1500));
    }
    await lab.heal();
    for (const h of lab.hosts) if (!h.running()) await h.start();
    process.stdout.write(`# faults: ${log.join('; ')}\n`);

    // converge: 6 replicas and one global task per host, each backed by exactly one container
    await until(async () => {
      const r = await listTasks(managers[0]);
      const live = r.tasks.filter((t) => t.status?.state === RUNNING && t.desiredState === RUNNING);
      const rep = live.filter((t) => t.serviceName === 'rep').length;
      const glob = live.filter((t) => t.serviceName === 'glob').length;
      if (rep !== 6 || glob !== 6) return `rep ${rep}/6, glob ${glob}/6 running`;
      const procs = [...sleepersByHost(lab.hosts, '86701').values(), ...sleepersByHost(lab.hosts, '86702').values()].reduce((a, b) => a + b, 0);
      return procs === 12 || `${procs} containers run for 12 tasks (a container without a task, or a task without one)`;
    }, 180_000, 500);
    await stopSampling();
    assert.deepEqual(violations, [], `seed ${SEED}; faults: ${log.join('; ')}`);

    // every manager reports the same state
    await until(async () => {
      const views = await Promise.all(managers.map(async (h) => (await listTasks(h)).tasks.map((t) => `${t.id}:${t.desiredState}:${t.status?.state}`).sort().join(',')));
      return views.every((v) => v === views[0]) || 'managers disagree';
    }, 30_000, 500);
  });
});
