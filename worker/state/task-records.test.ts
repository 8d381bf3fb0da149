// Unit tests for the worker's persisted task records: round trip, last write wins, atomic files.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TaskState, type Task } from '../../proto/gen/gantry/v1/objects.ts';
import { JournalTaskRecords } from './task-journal.ts';
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

test('state: the memory store keeps the last put and forgets deletes', async () => {
  const s = new MemoryTaskRecords();
  await s.put(rec('t1', TaskState.TASK_STATE_READY));
  await s.put(rec('t1', TaskState.TASK_STATE_RUNNING));
  await s.put(rec('t2', TaskState.TASK_STATE_READY));
  await s.delete('t2');
  assert.deepEqual((await s.load()).map((r) => [r.task.id, r.status.state]), [['t1', TaskState.TASK_STATE_RUNNING]]);
});

test('state: the journal replays puts and deletes, skips a torn tail, compacts, and survives reopen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-journal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const j = new JournalTaskRecords(dir);
  assert.deepEqual(await j.load(), []);
  const writes = [];
  for (let i = 0; i < 1500; i++) writes.push(j.put(rec(`t${i % 10}`, i % 2 ? TaskState.TASK_STATE_RUNNING : TaskState.TASK_STATE_READY, `c${i}`)));
  writes.push(j.delete('t9'));
  await Promise.all(writes);
  await j.put(rec('t99', TaskState.TASK_STATE_RUNNING, 'c-after')); // may still join the compacted body
  await j.put(rec('t98', TaskState.TASK_STATE_RUNNING, 'c-after')); // appended after the compaction: into the new file
  await j.close();
  writeFileSync(join(dir, 'tasks.jsonl'), '{"put": {"task": {"id": "torn"', { flag: 'a' });
  const again = new JournalTaskRecords(dir);
  const loaded = (await again.load()).sort((a, b) => a.task.id.localeCompare(b.task.id));
  assert.deepEqual(loaded.map((r) => r.task.id), ['t0', 't1', 't2', 't3', 't4', 't5', 't6', 't7', 't8', 't98', 't99']);
  assert.equal(loaded[0].containerId, 'c1490', 'the last put wins');
  assert.equal(readFileSync(join(dir, 'tasks.jsonl'), 'utf8').trim().split('\n').length, 11, 'compacted at load');
});
