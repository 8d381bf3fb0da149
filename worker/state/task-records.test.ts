// Unit tests for the worker's persisted task records: round trip, last write wins, atomic files.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TaskState, type Task } from '../../proto/gen/gantry/v1/objects.ts';
import { FileTaskRecords, MemoryTaskRecords, type TaskRecord } from './task-records.ts';

function rec(id: string, state: TaskState, containerId = ''): TaskRecord {
  const task = { id, desiredState: TaskState.TASK_STATE_RUNNING } as Task;
  return { task, status: { timestamp: 1, state, message: '', err: '', ports: [], health: '' }, containerId, runtime: 'sim' };
}

test('state: records round-trip, the last put wins, delete forgets, no temp files stay', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-state-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = new FileTaskRecords(join(dir, 'tasks'));
  assert.deepEqual(await s.load(), []);
  const puts = [];
  for (const st of [TaskState.TASK_STATE_ACCEPTED, TaskState.TASK_STATE_PREPARING, TaskState.TASK_STATE_RUNNING]) puts.push(s.put(rec('t1', st, 'c1')));
  puts.push(s.put(rec('t2', TaskState.TASK_STATE_READY)));
  await Promise.all(puts);
  writeFileSync(join(dir, 'tasks', 'junk.json'), '{not json');
  const again = new FileTaskRecords(join(dir, 'tasks'));
  const loaded = (await again.load()).sort((a, b) => a.task.id.localeCompare(b.task.id));
  assert.deepEqual(loaded.map((r) => [r.task.id, r.status.state, r.containerId]), [['t1', TaskState.TASK_STATE_RUNNING, 'c1'], ['t2', TaskState.TASK_STATE_READY, '']]);
  await again.delete('t1');
  assert.deepEqual((await again.load()).map((r) => r.task.id), ['t2']);
  assert.deepEqual(readdirSync(join(dir, 'tasks')).filter((n) => n.endsWith('.tmp')), []);
  await assert.rejects(again.put(rec('../evil', TaskState.TASK_STATE_READY)), /cannot name a state file/);
});

test('state: the memory store copies records', async () => {
  const s = new MemoryTaskRecords();
  const r = rec('t1', TaskState.TASK_STATE_READY);
  await s.put(r);
  r.status.state = TaskState.TASK_STATE_FAILED;
  assert.equal((await s.load())[0].status.state, TaskState.TASK_STATE_READY);
});
