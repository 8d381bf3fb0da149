// What this host tells the managers about itself when its session registers.
import os from 'node:os';
import type { NodeDescription } from '../proto/gen/gantry/v1/objects.ts';

export function describeHost(opts: { hostname: string; runtimes: string[]; version: string; labels?: Record<string, string> }): NodeDescription {
  return {
    hostname: opts.hostname,
    platform: { os: process.platform, architecture: os.machine() }, // as Docker reports it (x86_64)
    resources: { nanoCpus: os.availableParallelism() * 1e9, memoryBytes: os.totalmem() },
    engineVersion: opts.version,
    engineLabels: opts.labels ?? {},
    runtimes: opts.runtimes,
  };
}
