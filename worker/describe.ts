// What this host tells the managers about itself when its session registers.
import os from 'node:os';
import type { NodeDescription } from '../proto/gen/gantry/v1/objects.ts';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' };

export function describeHost(opts: { hostname: string; runtimes: string[]; version: string; labels?: Record<string, string> }): NodeDescription {
  return {
    hostname: opts.hostname,
    platform: { os: process.platform, architecture: ARCH[process.arch] ?? process.arch },
    resources: { nanoCpus: os.availableParallelism() * 1e9, memoryBytes: os.totalmem() },
    engineVersion: opts.version,
    engineLabels: opts.labels ?? {},
    runtimes: opts.runtimes,
  };
}
