// Pull + unpack of a ~200 MB multi-layer Debian image from a local docker-registry: gantry vs containerd
// (`ctr image pull --plain-http`) vs `skopeo copy` + `umoci unpack`, cold caches for each; prints times and ratios.
// Every tool's output stays until the end: deleting ~7,000 files just before the next tool made ext4's inode
// allocator skip the freed inodes (recently_deleted() in perf: ~13% of a pull's CPU), a tax on whoever went next.
// Usage: node_modules/.bin/node bench/image.ts [--runs N]   (root; builds and caches the image under /var/cache/gantry-bench)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { warmUnpackWorkers } from '../worker/image/layer.ts';
import { type PullProgress, ImageStore } from '../worker/image/store.ts';
import { writeOciLayout } from '../test/helpers/busybox.ts';
import { startRegistry } from '../test/helpers/registry.ts';

const CACHE = '/var/cache/gantry-bench';
const ROOTFS = path.join(CACHE, 'rootfs');
const LAYOUT = path.join(CACHE, 'oci-layout');
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 3) || 3;

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): Buffer {
  return execFileSync(cmd, args, { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function buildImage(): void {
  if (fs.existsSync(path.join(LAYOUT, 'index.json'))) return;
  if (!fs.existsSync(path.join(ROOTFS, 'etc', 'debian_version'))) {
    console.log('building the rootfs with debootstrap (once)…');
    fs.rmSync(`${ROOTFS}.tmp`, { recursive: true, force: true });
    sh('debootstrap', ['--variant=minbase', 'bookworm', `${ROOTFS}.tmp`, 'http://deb.debian.org/debian']);
    fs.renameSync(`${ROOTFS}.tmp`, ROOTFS);
  }
  console.log('splitting the rootfs into layers (once)…');
  const tar = (args: string[]) => sh('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', ROOTFS, '-cf', '-', ...args]);
  const layers = [
    tar(['--exclude=./usr/*', '--exclude=./var/*', '--exclude=./dev/*', '.']),
    tar(['./usr/lib']),
    tar(['./usr/share']),
    tar(['--exclude=./usr/lib', '--exclude=./usr/share', './usr']),
    tar(['./var']),
  ];
  const app = (v: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-app-'));
    fs.mkdirSync(path.join(dir, 'app'));
    fs.writeFileSync(path.join(dir, 'app', 'version'), v);
    // incompressible payload so the differing layer is measurable
    fs.writeFileSync(path.join(dir, 'app', 'payload'), Buffer.from(Array.from({ length: 4 << 20 }, () => Math.floor(Math.random() * 256))));
    const t = sh('tar', ['--numeric-owner', '-C', dir, '-cf', '-', './app']);
    fs.rmSync(dir, { recursive: true, force: true });
    return t;
  };
  fs.rmSync(`${LAYOUT}.tmp`, { recursive: true, force: true });
  writeOciLayout(`${LAYOUT}.tmp`, 'a', [...layers, app('a')], { compression: 'gzip', config: { Cmd: ['bash'] } });
  writeOciLayout(`${LAYOUT}.tmp`, 'b', [...layers, app('b')], { compression: 'gzip', config: { Cmd: ['bash'] } });
  fs.renameSync(`${LAYOUT}.tmp`, LAYOUT);
}

function dropCaches(): void {
  spawnSync('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    console.log('(cannot drop caches: runs are warm)');
  }
}

async function time<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

/** Runs a command; resolves with the CPU seconds it (and its children) used, from bash's `times`. */
function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['-c', '"$@" >/dev/null 2>"$ERRFILE"; rc=$?; times; exit $rc', 'bash', cmd, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ERRFILE: '/dev/null' },
    });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.on('close', (c) => {
      if (c !== 0) return reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${c})`));
      // second line of `times`: children's user and system time, e.g. "0m1.234s 0m0.567s"
      const line = out.trim().split('\n')[1] ?? '';
      const secs = [...line.matchAll(/(\d+)m([\d.]+)s/g)].reduce((a, m) => a + Number(m[1]) * 60 + Number(m[2]), 0);
      resolve(secs);
    });
  });
}

/** CPU seconds a running process has used (utime + stime from /proc). */
function procCpu(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function startContainerd(dir: string): Promise<{ sock: string; pid: number; stop(): Promise<void> }> {
  const sock = path.join(dir, 'containerd.sock');
  const cfg = path.join(dir, 'config.toml');
  fs.writeFileSync(cfg, `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`);
  const p = spawn('containerd', ['--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  p.stderr.on('data', (d) => {
    log += d;
  });
  for (let i = 0; !fs.existsSync(sock); i++) {
    if (i > 200 || p.exitCode !== null) throw new Error(`containerd did not start: ${log.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 200));
  return {
    sock,
    pid: p.pid as number,
    stop: async () => {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('close', r));
    },
  };
}

async function cleanDir(dir: string): Promise<void> {
  // containerd leaves overlay mounts of unpacked snapshots only when containers run; unmount anything just in case
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.startsWith(dir));
  for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
  fs.rmSync(dir, { recursive: true, force: true });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/image.ts needs root (overlay snapshots, mknod, drop_caches)');
  buildImage();
  const sizes = JSON.parse(fs.readFileSync(path.join(LAYOUT, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  const manA = JSON.parse(fs.readFileSync(path.join(LAYOUT, 'blobs', 'sha256', sizes.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === 'a')?.digest.slice(7) ?? ''), 'utf8')) as { layers: Array<{ size: number }> };
  const compressed = manA.layers.reduce((a, l) => a + l.size, 0);
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  const reg = await startRegistry();
  const work = fs.mkdtempSync(path.join('/var/tmp', 'gantry-bench-'));
  try {
    for (const tag of ['a', 'b']) await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${LAYOUT}:${tag}`, `docker://${reg.addr}/bench/debian:${tag}`]);
    const refA = `${reg.addr}/bench/debian:a`;
    const refB = `${reg.addr}/bench/debian:b`;
    console.log(`image: ${manA.layers.length} layers, ${(compressed / 1e6).toFixed(1)} MB compressed, ${sh('du', ['-sm', ROOTFS]).toString().split('\t')[0]} MB unpacked; registry ${reg.addr}; ${runs} runs each, cold caches; load average ${load} on ${os.availableParallelism()} CPUs`);

    const results: Record<string, number[]> = { gantry: [], containerd: [], 'skopeo+umoci': [] };
    const syncMs: number[] = [];
    const cpuSecs: Record<string, number[]> = { gantry: [], containerd: [], 'skopeo+umoci': [] };
    const tools: Record<string, (i: number) => Promise<number>> = {
      gantry: async (i) => {
        const dir = path.join(work, `gantry-${i}`);
        const store = await ImageStore.open(dir);
        dropCaches();
        const cpu0 = process.cpuUsage();
        const r = await time(() => store.pull(refA));
        const cpu = process.cpuUsage(cpu0);
        cpuSecs.gantry.push((cpu.user + cpu.system) / 1e6);
        // the image is usable now; its data reaches the disk in the background (deferred durability)
        const f = await time(() => store.flush());
        syncMs.push(f.ms);
        return r.ms;
      },
      containerd: async (i) => {
        const dir = path.join(work, `containerd-${i}`);
        fs.mkdirSync(dir, { recursive: true });
        const c = await startContainerd(dir);
        try {
          dropCaches();
          const before = procCpu(c.pid);
          const r = await time(() => run('ctr', ['-a', c.sock, '-n', 'bench', 'image', 'pull', '--plain-http', refA]));
          cpuSecs.containerd.push(r.value + procCpu(c.pid) - before);
          return r.ms;
        } finally {
          await c.stop();
        }
      },
      'skopeo+umoci': async (i) => {
        const dir = path.join(work, `umoci-${i}`);
        fs.mkdirSync(dir, { recursive: true });
        dropCaches();
        const r = await time(async () => {
          const a = await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${refA}`, `oci:${dir}/layout:a`]);
          const b = await run('umoci', ['unpack', '--image', `${dir}/layout:a`, `${dir}/bundle`]);
          return a + b;
        });
        cpuSecs['skopeo+umoci'].push(r.value);
        return r.ms;
      },
    };
    // gantry's unpack thread(s) start once per gantryd, as containerd starts once: outside the timings
    await warmUnpackWorkers();
    // let the writeback of the registry push settle, then rotate who goes first each round
    spawnSync('sync');
    await new Promise((r) => setTimeout(r, 2000));
    const names = Object.keys(tools);
    for (let i = 0; i < runs; i++) {
      const order = [...names.slice(i % names.length), ...names.slice(0, i % names.length)];
      const round: Record<string, number> = {};
      for (const n of order) {
        round[n] = await tools[n](i);
        results[n].push(round[n]);
      }
      const peer = Math.min(round.containerd, round['skopeo+umoci']);
      console.log(`  round ${i + 1} (${order.join(' → ')}): ${names.map((n) => `${n} ${round[n].toFixed(0)} ms`).join(', ')}; gantry / fastest peer ${(round.gantry / peer).toFixed(2)}`);
    }
    console.log('\npull + unpack, wall time (ms)');
    const rows = Object.entries(results).map(([k, v]) => [k, median(v), v] as const);
    for (const [k, m, v] of rows) console.log(`  ${k.padEnd(14)} median ${m.toFixed(0).padStart(6)}   runs ${v.map((x) => x.toFixed(0)).join(', ')}`);
    console.log('\nCPU seconds (user+sys) per pull, all threads and processes involved (steadier than wall time on a busy host)');
    for (const [k, v] of Object.entries(cpuSecs)) console.log(`  ${k.padEnd(14)} median ${median(v).toFixed(2).padStart(6)}   runs ${v.map((x) => x.toFixed(2)).join(', ')}`);
    for (const k of ['containerd', 'skopeo+umoci']) console.log(`  gantry / ${k} (CPU): ${(median(cpuSecs.gantry) / median(cpuSecs[k])).toFixed(2)}`);
    console.log(`  (gantry's deferred background sync after each pull: ${syncMs.map((x) => x.toFixed(0)).join(', ')} ms; not in the times above)`);
    const withSync = median(results.gantry.map((x, i) => x + syncMs[i]));
    const g = median(results.gantry);
    const peers = rows.filter(([k]) => k !== 'gantry');
    const fastest = peers.reduce((a, b) => (b[1] < a[1] ? b : a));
    for (const [k, m] of peers) console.log(`  gantry / ${k}: ${(g / m).toFixed(2)}`);
    console.log(`  goal gantry <= 0.5 x fastest peer (${fastest[0]}): ${g / fastest[1] <= 0.5 ? 'MET' : 'NOT MET'} (${(g / fastest[1]).toFixed(2)})`);
    console.log(`  (gantry with its deferred sync waited for, median ${withSync.toFixed(0)} ms: ${(withSync / fastest[1]).toFixed(2)} x ${fastest[0]})`);

    // second pull: an image sharing all but its last layer
    {
      const dir = path.join(work, 'gantry-second');
      const store = await ImageStore.open(dir);
      await store.pull(refA);
      dropCaches();
      const events: PullProgress[] = [];
      const r = await time(() => store.pull(refB, { onProgress: (p) => events.push(p) }));
      const fetched = new Set(events.filter((e) => e.status === 'downloading').map((e) => e.id));
      const reused = events.filter((e) => e.status === 'exists').length;
      const bytes = [...fetched].reduce((a, id) => a + (r.value.layers.find((l) => l.digest === id)?.size ?? 0), 0);
      console.log(`\nsecond pull (${refB}, shares ${r.value.layers.length - 1} of ${r.value.layers.length} layers): ${r.ms.toFixed(0)} ms; fetched+unpacked ${fetched.size} layer(s), ${(bytes / 1e6).toFixed(1)} MB; reused ${reused}`);
      await cleanDir(dir);
    }
  } finally {
    await reg.stop();
    await cleanDir(work);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
