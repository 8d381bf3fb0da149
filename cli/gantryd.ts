#!/usr/bin/env node
// gantryd: the per-host daemon. Parses its flags, starts the Daemon, stops it on SIGTERM/SIGINT.
// Containers outlive gantryd: stopping or killing it leaves them running for the next start.
import os from 'node:os';
import { bool, type FlagDef, list, parseArgs, str, UsageError } from './args.ts';
import { DEFAULT_SOCKET } from './connection.ts';
import { DEFAULT_DATA_DIR, DEFAULT_PORT, Daemon } from './daemon/node.ts';
import { stderrLog } from './log.ts';

const FLAGS: FlagDef[] = [
  { name: 'data-dir', kind: 'string', help: 'where this host keeps its state (default /var/lib/gantry)' },
  { name: 'socket', kind: 'string', help: `the local API socket (default ${DEFAULT_SOCKET})` },
  { name: 'exec-root', kind: 'string', help: 'container runtime state that a reboot clears, best on a tmpfs (default /run/gantry; <data-dir>/exec with another --data-dir)' },
  { name: 'listen-addr', kind: 'string', help: `where a manager listens for workers and clients (default 0.0.0.0:${DEFAULT_PORT}; port 0 = any free port)` },
  { name: 'advertise-addr', kind: 'string', help: 'the IP other hosts reach this one at (default: the first non-loopback IPv4)' },
  { name: 'runtime', kind: 'string', help: 'container runtime: native (gantry-exec), runc, crun or sim (default native when built, else runc)' },
  { name: 'cgroup-parent', kind: 'string', help: 'cgroup under which containers are placed (default gantry)' },
  { name: 'hostname', kind: 'string', help: 'the name this host reports (default: the system hostname)' },
  { name: 'insecure-registry', kind: 'list', help: 'a registry (host[:port]) to reach over plain HTTP or unverified TLS; repeatable' },
  { name: 'help', short: 'h', kind: 'bool', help: 'print this help' },
];

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2), FLAGS);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`gantryd: ${err.message}\nSee 'gantryd --help'.\n`);
      return 2;
    }
    throw err;
  }
  if (bool(args, 'help')) {
    process.stdout.write(`Usage: gantryd [OPTIONS]\n\nRuns this host's gantry daemon.\n\nOptions:\n${FLAGS.map((f) => `  --${f.name.padEnd(16)} ${f.help}`).join('\n')}\n`);
    return 0;
  }
  const log = stderrLog(process.env);
  const daemon = new Daemon({
    dataDir: str(args, 'data-dir') ?? DEFAULT_DATA_DIR,
    execRoot: str(args, 'exec-root'),
    socket: str(args, 'socket') ?? DEFAULT_SOCKET,
    listenAddr: str(args, 'listen-addr') ?? `0.0.0.0:${DEFAULT_PORT}`,
    advertiseAddr: str(args, 'advertise-addr'),
    runtime: str(args, 'runtime') ?? 'default',
    cgroupParent: str(args, 'cgroup-parent') ?? 'gantry',
    hostname: str(args, 'hostname') ?? os.hostname(),
    insecureRegistries: list(args, 'insecure-registry'),
    log,
  });
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`gantryd: ${sig}: stopping (containers keep running)`);
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    daemon.stop().then(
      () => process.exit(0),
      (err) => {
        log.error(`gantryd: stopping failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    await daemon.start();
  } catch (err) {
    log.error(`gantryd: ${(err as Error).message}`);
    await daemon.stop().catch(() => {});
    return 1;
  }
  log.info('gantryd: ready');
  return -1; // keep running
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    process.stderr.write(`gantryd: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
