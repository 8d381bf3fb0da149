// Small clusters of in-process gantryd daemons on 127.0.0.1 with the sim runtime (no containers, no
// namespaces): enough for what the security tests check (TLS, tokens, roles, revocation, secrets).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { Daemon } from '../../cli/daemon/node.ts';
import { run } from '../../cli/gantry.ts';

export interface LocalHost {
  name: string;
  dir: string;
  daemon: Daemon;
  socket: string;
  logs: string[];
  /** Runs the CLI against this host's local socket (or `env` overrides). */
  gantry(args: string[], env?: Record<string, string>): Promise<{ code: number; out: string; err: string }>;
}

function sink(): { stream: Writable; text: () => string } {
  const parts: string[] = [];
  return {
    stream: new Writable({
      write: (c, _e, cb) => {
        parts.push(String(c));
        cb();
      },
    }),
    text: () => parts.join(''),
  };
}

/**
 * The image tasks on these hosts use: a one-file rootfs imported into every host's image store (the
 * sim runtime runs nothing, and no registry is needed: resolving it at 127.0.0.1:9 fails at once).
 */
export const SIM_IMAGE = '127.0.0.1:9/sim:1';

function simImageTar(dir: string): string {
  const root = path.join(dir, 'sim-rootfs');
  mkdirSync(path.join(root, 'etc'), { recursive: true });
  writeFileSync(path.join(root, 'etc', 'hostname'), 'sim\n');
  const tar = path.join(dir, 'sim-rootfs.tar');
  execFileSync('tar', ['-cf', tar, '-C', root, '.']);
  return tar;
}

export async function startHost(t: TestContext, name: string): Promise<LocalHost> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `gantry-sec-${name}-`));
  const socket = path.join(dir, 'gantry.sock');
  const logs: string[] = [];
  const line = (lvl: string) => (m: string) => logs.push(`${lvl} ${m}`);
  const daemon = new Daemon({
    dataDir: path.join(dir, 'data'),
    socket,
    listenAddr: '127.0.0.1:0',
    advertiseAddr: '127.0.0.1',
    runtime: 'sim',
    cgroupParent: 'gantry-sec-test',
    hostname: name,
    log: { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error') },
  });
  t.after(async () => {
    await daemon.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  await daemon.start();
  const host: LocalHost = {
    name,
    dir,
    daemon,
    socket,
    logs,
    async gantry(args, env = {}) {
      const out = sink();
      const err = sink();
      const code = await run(args, { out: out.stream, err: err.stream, isTTY: false, env: { ...process.env, GANTRY_HOST: `unix://${socket}`, ...env } });
      return { code, out: out.text(), err: err.text() };
    },
  };
  const imported = await host.gantry(['image', 'import', simImageTar(dir), SIM_IMAGE]);
  if (imported.code !== 0) throw new Error(`importing ${SIM_IMAGE} on ${name}: ${imported.err}`);
  return host;
}

export async function until<T>(what: () => Promise<T | string> | T | string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T | string = '';
  while (Date.now() < end) {
    last = await what();
    if (typeof last !== 'string') return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not done after ${timeoutMs} ms: ${String(last)}`);
}

/** `gantry init` on `h`; returns the worker and manager tokens and the manager's TCP address. */
export async function initCluster(h: LocalHost): Promise<{ worker: string; manager: string; addr: string }> {
  const init = await h.gantry(['init', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0']);
  if (init.code !== 0) throw new Error(`init failed: ${init.err}`);
  const tok = async (role: string) => (await h.gantry(['join-token', '-q', role])).out.trim();
  const worker = await tok('worker');
  const manager = await tok('manager');
  const addr = init.out.match(/ (\d+\.\d+\.\d+\.\d+:\d+)\s*$/m)?.[1] ?? '';
  return { worker, manager, addr };
}

/** Waits until `node ls` on `via` shows `hostname` Ready. */
export async function waitReady(via: LocalHost, hostname: string): Promise<void> {
  await until(async () => {
    const r = await via.gantry(['node', 'ls']);
    const row = r.out.split('\n').find((l) => l.split(/\s+/).includes(hostname));
    return row && /\bReady\b/.test(row) ? true : `${hostname} not ready: ${row ?? r.err}`;
  });
}

/** The rows of a `service ps` table whose CURRENT STATE is Running (the DESIRED STATE column says Running long before). */
export function runningRows(psTable: string): string[] {
  const [header = '', ...rows] = psTable.split('\n');
  const at = header.indexOf('CURRENT STATE');
  if (at < 0) return [];
  return rows.filter((r) => r.slice(at).startsWith('Running'));
}
