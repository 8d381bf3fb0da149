// StatusWriter: group commit. An idle writer sends a report at once (no fixed delay: a rolling
// update waits on each RUNNING); reports that arrive while a write is in flight go out together
// right after it; a failed write is retried after a pause, with nothing lost.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { Store, Write } from '../store/types.ts';
import { StatusWriter } from './status-writer.ts';

function fakeStore(tasks: string[]) {
  const stored = new Map<string, Task>(tasks.map((id) => [id, { id, nodeId: 'n1', status: { state: TaskState.TASK_STATE_ASSIGNED } } as Task]));
  const batches: string[][] = [];
  const gates: { release: () => void; fail: (e: Error) => void }[] = [];
  const store = {
    view: () => ({ get: (_kind: string, id: string) => stored.get(id) }),
    batch: (writes: Write[]) =>
      new Promise((resolve, reject) => {
        batches.push(writes.map((w) => `${(w as { object: Task }).object.id}:${(w as { object: Task }).object.status?.state}`));
        gates.push({
          release: () => {
            for (const w of writes) stored.set((w as { object: Task }).object.id, (w as { object: Task }).object);
            resolve({ conflicts: [], revision: 1 });
          },
          fail: reject,
        });
      }),
    waitFor: async () => {},
  } as unknown as Store;
  return { store, batches, gates };
}

const turn = () => new Promise<void>((r) => setImmediate(r));
const running = { state: TaskState.TASK_STATE_RUNNING } as never;
const starting = { state: TaskState.TASK_STATE_STARTING } as never;

test('status writer: an idle writer writes at once; reports during a write go out together after it', async () => {
  const { store, batches, gates } = fakeStore(['a', 'b', 'c']);
  const w = new StatusWriter(store);
  w.enqueue('n1', 'a', running);
  await turn();
  assert.deepEqual(batches, [[`a:${TaskState.TASK_STATE_RUNNING}`]], 'written in the next turn, no timer');
  w.enqueue('n1', 'b', starting);
  w.enqueue('n1', 'c', starting);
  w.enqueue('n1', 'b', running);
  await turn();
  assert.equal(batches.length, 1, 'nothing more while the first write is in flight');
  gates[0].release();
  await turn();
  await turn();
  assert.deepEqual(batches[1]?.sort(), [`b:${TaskState.TASK_STATE_RUNNING}`, `c:${TaskState.TASK_STATE_STARTING}`], 'one write for both, b at its furthest state');
  gates[1].release();
  await w.stop();
});

test('status writer: a failed write is retried after a pause and loses nothing', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { store, batches, gates } = fakeStore(['a']);
  const w = new StatusWriter(store, { log: () => {} });
  w.enqueue('n1', 'a', running);
  await turn();
  gates[0].fail(new Error('etcd unavailable'));
  await turn();
  await turn();
  assert.equal(batches.length, 1, 'no retry before the pause');
  t.mock.timers.tick(500);
  await turn();
  await turn();
  assert.deepEqual(batches[1], [`a:${TaskState.TASK_STATE_RUNNING}`], 'retried with the same report');
  gates[1].release();
  await w.stop();
});
