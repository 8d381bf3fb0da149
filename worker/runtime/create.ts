// Chooses and builds the worker's Runtime from gantryd's --runtime: native (gantry-exec, the default
// when built), runc, crun, sim, or a path to any runc-compatible binary. What containers write and
// print goes under <data-dir>; their runtime state (what a reboot clears) under the exec root.
import { existsSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';
import type { Clock } from './clock.ts';
import { type Log, nullLog } from './log.ts';
import { defaultGantryExecPath, OciRuntime } from './runtime-oci.ts';
import { SimRuntime } from './runtime-sim.ts';
import { type Runtime, RuntimeError } from './types.ts';

export interface CreateRuntimeOptions {
  dataDir: string;
  /**
   * Runtime state a reboot clears: bundles, sockets, pid and exit files, the runtime's --root
   * (gantryd --exec-root; /run is a tmpfs on most hosts, so these cost no disk inodes). Default: dataDir.
   */
  execRoot?: string;
  cgroupParent?: string;                 // default "gantry"
  log?: Log | ((m: string) => void);
  clock?: Clock;
  /** gantry-exec (runtime and monitor); default native-exec/build/gantry-exec, then $PATH's. */
  gantryExec?: string;
}

const KNOWN: Record<string, string[]> = {
  runc: ['/usr/sbin/runc', '/usr/bin/runc', '/usr/local/sbin/runc', '/usr/local/bin/runc'],
  crun: ['/usr/bin/crun', '/usr/local/bin/crun'],
};

function findGantryExec(explicit?: string): string | undefined {
  for (const p of [explicit, process.env.GANTRY_EXEC, defaultGantryExecPath(), '/usr/local/bin/gantry-exec', '/usr/bin/gantry-exec']) {
    if (p && existsSync(p)) return p;
  }
  return undefined;
}

function toLog(l: CreateRuntimeOptions['log']): Log {
  if (!l) return nullLog;
  if (typeof l !== 'function') return l;
  const f = (m: string, x?: Record<string, unknown>) => l(x ? `${m} ${JSON.stringify(x)}` : m);
  return { debug() {}, info: f, warn: f, error: f };
}

/** "default" | "native" | "runc" | "crun" | "sim" | /path/to/runtime. */
export async function createRuntime(name: string, opts: CreateRuntimeOptions): Promise<Runtime> {
  const log = toLog(opts.log);
  if (name === 'sim') return new SimRuntime({ clock: opts.clock });
  const gx = findGantryExec(opts.gantryExec);
  if (!gx) throw new RuntimeError('gantry-exec is not built: every runtime needs its monitor (run `make -C native-exec` or install gantry-exec)');
  let rtName = name;
  let binary: string | undefined;
  if (name === 'default' || name === '' || name === 'native') {
    rtName = 'native';
    binary = gx;
  } else if (KNOWN[name]) {
    binary = KNOWN[name].find((p) => existsSync(p));
    if (!binary) throw new RuntimeError(`runtime "${name}" is not installed (looked in ${KNOWN[name].join(', ')}); install it or pick --runtime native`);
  } else if (isAbsolute(name) && existsSync(name)) {
    rtName = basename(name);
    binary = name;
  } else {
    throw new RuntimeError(`unknown runtime "${name}": use native, runc, crun, sim or an absolute path to a runc-compatible binary`);
  }
  log.info(`using runtime ${rtName} (${binary}), monitor ${gx}`);
  return new OciRuntime({
    name: rtName, binary, monitorBinary: gx, log, clock: opts.clock,
    root: join(opts.execRoot ?? opts.dataDir, 'runtime', rtName),
    stateDir: join(opts.execRoot ?? opts.dataDir, 'containers'),
    diskDir: join(opts.dataDir, 'containers'),
    cgroupParent: opts.cgroupParent ?? 'gantry',
  });
}
