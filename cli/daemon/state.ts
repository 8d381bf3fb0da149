// What a host remembers about its place in a cluster (<data-dir>/node.json), written atomically.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface NodeState {
  nodeId: string;
  nodeSecret: string;
  clusterId: string;
  role: 'manager' | 'worker';
  managers: string[];          // dispatcher addresses (host:port)
  listenAddr?: string;         // managers: where the gRPC server listens
  advertiseAddr: string;       // the address this host is reached at (IP)
  managerAddr?: string;        // managers: host:port others reach this manager at
  etcdName?: string;
}

export async function loadState(dataDir: string): Promise<NodeState | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dataDir, 'node.json'), 'utf8')) as NodeState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path.join(dataDir, 'node.json')}: ${(err as Error).message} (move it away to start this host afresh)`);
  }
}

export async function saveState(dataDir: string, state: NodeState): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, 'node.json');
  // a unique temporary name: two saves at once (promotion, a new manager list) must not rename each other's file
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}
