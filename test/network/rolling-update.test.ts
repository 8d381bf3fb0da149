// End-to-end on 2 lab hosts: a client loop requesting a 3-replica HTTP service by name (its VIP)
// sees no failed request while the service is updated start-first with a health check.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { run } from '../../deploy/lab/sys.ts';
import { type ClusterLab, clusterSkipReason, gantryOk, IMAGE, live, ps, sleepers, startClusterLab, stopClusterLab, summary, until } from '../helpers/lab.ts';

// The server answers only 2 s after it starts (a task that joined the VIP before its health check
// passed would refuse connections meanwhile) and exits at once on SIGTERM (a task still behind the
// VIP when it is stopped would refuse them too). As PID 1, sh needs the trap to die of SIGTERM.
const SERVER = ['sh', '-c', 'trap "exit 0" TERM; sleep 2; mkdir -p /tmp/www && hostname > /tmp/www/index.html && httpd -f -p 80 -h /tmp/www & wait'];
const HEALTH = ['--health-cmd', 'wget -qO- http://127.0.0.1/ >/dev/null', '--health-interval', '500ms', '--health-start-period', '30s'];
// One line per request in /tmp/reqs: "ok <unix s> <answering hostname>" or "fail <unix s> <error>".
const MARK = '86611';
const CLIENT = ['sh', '-c', `(while :; do if timeout 10 wget -qO- http://web/ >/tmp/body 2>/tmp/err; then echo "ok $(date +%s) $(cat /tmp/body)"; else echo "fail $(date +%s) $(cat /tmp/err)"; fi >>/tmp/reqs; sleep 0.1; done) & exec sleep ${MARK}`];

interface Req {
  ok: boolean;
  at: number; // unix seconds
  what: string; // the answering task's hostname, or the error
}

async function requests(c: ClusterLab): Promise<Req[]> {
  for (const h of c.lab.hosts) {
    const [pid] = sleepers(h, MARK);
    if (!pid) continue;
    const r = await run('nsenter', ['-t', String(pid), '-m', 'cat', '/tmp/reqs'], { timeoutMs: 10_000 });
    return r.stdout.split('\n').filter(Boolean).map((l) => {
      const [kind, at, ...rest] = l.split(' ');
      return { ok: kind === 'ok', at: Number(at), what: rest.join(' ') };
    });
  }
  throw new Error(`no client container (sleep ${MARK}) on any lab host`);
}

describe('networking: rolling update', { skip: clusterSkipReason(), concurrency: 1, timeout: 600_000 }, () => {
  let c: ClusterLab;
  before(async () => {
    c = await startClusterLab({ hosts: 2 });
  });
  after(async () => {
    await stopClusterLab(c);
  });

  test('networking: during a start-first rolling update with a health check, a client loop on the VIP sees no failed request', async (t) => {
    await gantryOk(c.manager, ['network', 'create', '--driver', 'overlay', 'front']);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'web', '--replicas', '3', '--network', 'front', ...HEALTH, IMAGE, ...SERVER]);
    await until(async () => {
      const t = await ps(c.manager, 'web');
      return live(t).length === 3 || summary(t);
    }, 120_000);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'client', '--network', 'front', IMAGE, ...CLIENT]);
    // the loop runs and every replica answers before the update
    await until(async () => {
      const oks = (await requests(c).catch(() => [])).filter((r) => r.ok);
      return new Set(oks.map((r) => r.what)).size === 3 || `answers so far from ${[...new Set(oks.map((r) => r.what))].join(', ') || 'nobody'}`;
    }, 120_000, 500);
    const old = new Set(live(await ps(c.manager, 'web')).map((t) => t.id.slice(0, 12)));
    const before = (await requests(c)).length;
    const start = Math.floor(Date.now() / 1000);
    await gantryOk(c.manager, ['service', 'update', '-d', '--env-add', 'V=2', '--update-order', 'start-first', 'web']);
    let now: string[] = [];
    await until(async () => {
      const t = live(await ps(c.manager, 'web'));
      now = t.map((x) => x.id.slice(0, 12));
      return (t.length === 3 && now.every((id) => !old.has(id))) || `want 3 new running tasks: ${summary(t)}`;
    }, 240_000, 500);
    const end = Math.floor(Date.now() / 1000);
    // requests go on after the update: the loop ran through all of it
    await until(async () => (await requests(c)).some((r) => r.at > end) || 'no request after the update yet', 60_000, 500);
    const during = (await requests(c)).slice(before);
    const failed = during.filter((r) => !r.ok);
    t.diagnostic(`${during.length} requests from the update's start on, ${during.filter((r) => r.at >= start && r.at <= end).length} during its ${end - start} s, ${failed.length} failed`);
    assert.deepEqual(failed, [], `failed requests during the update (${during.length} made)`);
    const window = during.filter((r) => r.at >= start && r.at <= end);
    const answered = new Set(window.map((r) => r.what));
    assert.ok([...answered].some((h) => old.has(h)), `requests during the update reached an old task: ${[...answered].join(', ')} (old ${[...old].join(', ')})`);
    assert.ok([...answered].some((h) => now.includes(h)), `requests during the update reached a new task: ${[...answered].join(', ')} (new ${now.join(', ')})`);
  });
});
