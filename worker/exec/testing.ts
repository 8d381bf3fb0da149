// Fixture builders for task-manager tests: tasks with container specs, and a recorder of the
// statuses a TaskManager reports, with a poll helper that says why it is not done yet.
import { type Task, TaskState, type TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';
import type { TaskImages } from './controller.ts';

export function task(id: string, over: { image?: string; command?: string[]; args?: string[]; desired?: TaskState; env?: string[]; graceMs?: number } = {}): Task {
  return {
    id, serviceId: 'svc1', serviceName: 'web', slot: 1, nodeId: 'node1', specVersion: 1, jobIteration: 0, networks: [],
    desiredState: over.desired ?? TaskState.TASK_STATE_RUNNING,
    status: { timestamp: 0, state: TaskState.TASK_STATE_ASSIGNED, message: 'assigned', err: '', ports: [], health: '' },
    spec: {
      networks: [], runtime: '', forceUpdate: 0,
      container: {
        image: over.image ?? 'busybox:latest', command: over.command ?? [], args: over.args ?? [], env: over.env ?? [], dir: '', user: '',
        hostname: '', labels: {}, stopGracePeriodMs: over.graceMs ?? 0, stopSignal: '', mounts: [], tty: false, readOnly: false,
        capAdd: [], capDrop: [], pidsLimit: 0, imageDigest: '',
      },
    },
  };
}

export class StatusRecorder {
  readonly all: { id: string; status: TaskStatus }[] = [];
  readonly onStatus = (id: string, status: TaskStatus) => {
    this.all.push({ id, status });
  };
  states(id: string): TaskState[] {
    return this.all.filter((x) => x.id === id).map((x) => x.status.state);
  }
  last(id: string): TaskStatus | undefined {
    return this.all.filter((x) => x.id === id).at(-1)?.status;
  }
}

export async function until(check: () => string | null | Promise<string | null>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let why: string | null = 'not checked';
  while (Date.now() < end) {
    why = await check();
    if (why === null) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out: ${why}`);
}

/** An image store with one image, busybox:latest, whose only layer is a busybox dir. */
export function dirImages(layer: string): TaskImages<{ id: string }> {
  return {
    async resolveLocal(ref) {
      return ref.startsWith('busybox') ? { id: 'sha256:busybox' } : undefined;
    },
    async pull(ref) {
      throw new Error(`image "${ref}" not found in 127.0.0.1:5000 (404): push it or check the name`);
    },
    async imageConfig() {
      return { Env: ['PATH=/bin'], Cmd: ['sh'] };
    },
    async snapshotDirs() {
      return [layer];
    },
  };
}
