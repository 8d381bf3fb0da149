// End-to-end on 2 lab hosts: while a 3-replica HTTP service is updated start-first with a health
// check, a client container looping on its name (VIP) and a lab host looping on its published port
// (routing mesh) see no failed request.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run } from '../../deploy/lab/sys.ts';
import { type ClusterLab, clusterSkipReason, gantryOk, IMAGE, live, ps, sleepers, startClusterLab, stopClusterLab, summary, until } from '../helpers/lab.ts';

// The server answers only 2 s after it starts (a task that joined the VIP before its health check
// passed would refuse connections meanwhile) and exits at once on SIGTERM (a task still behind the
// VIP when it is stopped would refuse them too). As PID 1, sh needs the trap to die of SIGTERM.
const SERVER = ['sh', '-c', 'trap "exit 0" TERM; sleep 2; mkdir -p /tmp/www && hostname > /tmp/www/index.html && httpd -f -p 80 -h /tmp/www & wait'];
const HEALTH = ['--health-cmd', 'wget -qO- http://127.0.0.1/ >/dev/null', '--health-interval', '500ms', '--health-start-period', '30s'];
/** A shell loop appending one line per request to `file`: "ok <unix s> <answering hostname>" or "fail <unix s> <error>". */
function loop(bb: string, url: string, file: string): string {
  return `while :; do if ${bb}timeout 10 ${bb}wget -qO- ${url} >${file}.body 2>${file}.err; then echo "ok $(${bb}date +%s) $(${bb}cat ${file}.body)"; else echo "fail $(${bb}date +%s) $(${bb}cat ${file}.err)"; fi >>${file}; ${bb}sleep 0.1; done`;
}
const MARK = '86611';
const CLIENT = ['sh', '-c', `(${loop('', 'http://web/', '/tmp/reqs')}) & exec sleep ${MARK}`];

interface Req {
  ok: boolean;
  at: number; // unix seconds
  what: string; // the answering task's hostname, or the error
}

function parse(text: string): Req[] {
  return text.split('\n').filter(Boolean).map((l) => {
    const [kind, at, ...rest] = l.split(' ');
    return { ok: kind === 'ok', at: Number(at), what: rest.join(' ') };
  });
}

async function clientRequests(c: ClusterLab): Promise<Req[]> {
  for (const h of c.lab.hosts) {
    const [pid] = sleepers(h, MARK);
    if (!pid) continue;
    const r = await run('nsenter', ['-t', String(pid), '-m', 'cat', '/tmp/reqs'], { timeoutMs: 10_000 });
    return parse(r.stdout);
  }
  throw new Error(`no client container (sleep ${MARK}) on any lab host`);
}

function meshRequests(file: string): Req[] {
  return fs.existsSync(file) ? parse(fs.readFileSync(file, 'utf8')) : [];
}

/** What a loop saw from `from` on: no failure, and answers from old and new tasks while the update ran. */
function check(name: string, all: Req[], from: number, start: number, end: number, old: Set<string>, now: string[]): string {
  const during = all.slice(from);
  const failed = during.filter((r) => !r.ok);
  assert.deepEqual(failed, [], `${name}: failed requests during the update (${during.length} made)`);
  const answered = new Set(during.filter((r) => r.at >= start && r.at <= end).map((r) => r.what));
  assert.ok([...answered].some((h) => old.has(h)), `${name}: requests during the update reached an old task: ${[...answered].join(', ')} (old ${[...old].join(', ')})`);
  assert.ok([...answered].some((h) => now.includes(h)), `${name}: requests during the update reached a new task: ${[...answered].join(', ')} (new ${now.join(', ')})`);
  return `${name}: ${during.length} requests from the update's start on, ${during.filter((r) => r.at >= start && r.at <= end).length} during its ${end - start} s, ${failed.length} failed`;
}

describe('networking: rolling update', { skip: clusterSkipReason(), concurrency: 1, timeout: 600_000 }, () => {
  let c: ClusterLab;
  before(async () => {
    c = await startClusterLab({ hosts: 2 });
  });
  after(async () => {
    await stopClusterLab(c);
  });

  test('networking: during a start-first rolling update with a health check, a client loop on the VIP and one on the published port see no failed request', async (t) => {
    const port = 20000 + Math.floor(Math.random() * 9000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-net-update-'));
    const meshFile = path.join(dir, 'reqs');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    await gantryOk(c.manager, ['network', 'create', '--driver', 'overlay', 'front']);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'web', '--replicas', '3', '--network', 'front', '--publish', `${port}:80`, ...HEALTH, IMAGE, ...SERVER]);
    await until(async () => {
      const tasks = await ps(c.manager, 'web');
      return live(tasks).length === 3 || summary(tasks);
    }, 120_000);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'client', '--network', 'front', IMAGE, ...CLIENT]);
    // the mesh loop runs on host 1, in its netns, against its own address (its own process group, killed at the end)
    const h = c.lab.hosts[1];
    const mesh = spawn('nsenter', [`--net=/run/netns/${h.ns}`, '--', '/bin/sh', '-c', loop('/bin/busybox ', `http://${h.ip}:${port}/`, meshFile)], { detached: true, stdio: 'ignore' });
    t.after(() => {
      try {
        if (mesh.pid) process.kill(-mesh.pid, 'SIGKILL');
      } catch {
        // gone
      }
    });
    // both loops run and every replica answers them before the update
    await until(async () => {
      for (const [name, reqs] of [['client', await clientRequests(c).catch(() => [])], ['mesh', meshRequests(meshFile)]] as const) {
        const seen = new Set(reqs.filter((r) => r.ok).map((r) => r.what));
        if (seen.size !== 3) return `${name} answers so far from ${[...seen].join(', ') || 'nobody'}`;
      }
      return true;
    }, 120_000, 500);
    const old = new Set(live(await ps(c.manager, 'web')).map((x) => x.id.slice(0, 12)));
    const fromClient = (await clientRequests(c)).length;
    const fromMesh = meshRequests(meshFile).length;
    const start = Math.floor(Date.now() / 1000);
    await gantryOk(c.manager, ['service', 'update', '-d', '--env-add', 'V=2', '--update-order', 'start-first', 'web']);
    let now: string[] = [];
    await until(async () => {
      const tasks = live(await ps(c.manager, 'web'));
      now = tasks.map((x) => x.id.slice(0, 12));
      return (tasks.length === 3 && now.every((id) => !old.has(id))) || `want 3 new running tasks: ${summary(tasks)}`;
    }, 240_000, 500);
    const end = Math.floor(Date.now() / 1000);
    // requests go on after the update: the loops ran through all of it
    await until(async () => {
      if (!(await clientRequests(c)).some((r) => r.at > end)) return 'no client request after the update yet';
      return meshRequests(meshFile).some((r) => r.at > end) || 'no mesh request after the update yet';
    }, 60_000, 500);
    t.diagnostic(check('client on the VIP', await clientRequests(c), fromClient, start, end, old, now));
    t.diagnostic(check(`mesh on ${h.name}:${port}`, meshRequests(meshFile), fromMesh, start, end, old, now));
  });
});
