// Table layout, state words and ages, replica counts, --format parsing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fixtures } from '../manager/store/fixtures.ts';
import { parseArgs } from './args.ts';
import { currentState, FORMAT_FLAG, json, managerStatusText, outputFormat, replicasText, table, taskName } from './format.ts';

test('format: tables pad columns by three spaces and leave the last unpadded', () => {
  assert.equal(table(['ID', 'NAME'], [['abc', 'web'], ['d', 'database']]), 'ID    NAME\nabc   web\nd     database\n');
});

test('format: a task reads "Running 5 seconds ago" and is named web.1', () => {
  const t = fixtures.task({ serviceName: 'web', slot: 1, nodeId: 'n1', state: 'running', timestamp: 1_000_000 });
  assert.equal(currentState(t, 1_005_000), 'Running 5 seconds ago');
  assert.equal(taskName(t), 'web.1');
  const g = fixtures.task({ serviceName: 'agent', slot: 0, nodeId: 'n1abc', state: 'pending', timestamp: 1_000_000 });
  assert.equal(currentState(g, 1_000_100), 'Pending less than a second ago');
  assert.equal(taskName(g), 'agent.n1abc');
});

test('format: replica counts for services and jobs', () => {
  assert.equal(replicasText(fixtures.service({ replicas: 3 }).spec, 2, 3, 0), '2/3');
  assert.equal(replicasText(fixtures.service({ replicas: 3, maxReplicasPerNode: 1 }).spec, 2, 3, 0), '2/3 (max 1 per node)');
  assert.equal(replicasText(fixtures.service({ mode: 'replicated-job', replicas: 4 }).spec, 1, 4, 2), '1/4 (2/4 completed)');
});

test('format: manager status words', () => {
  const m = fixtures.node({ role: 'manager' });
  assert.equal(managerStatusText(m), 'Reachable');
  m.managerStatus!.leader = true;
  assert.equal(managerStatusText(m), 'Leader');
  assert.equal(managerStatusText(fixtures.node()), '');
});

test('format: --format accepts table and json only; json prints bytes as base64', () => {
  const def = [FORMAT_FLAG];
  assert.equal(outputFormat(parseArgs([], def)), 'table');
  assert.equal(outputFormat(parseArgs(['--format', 'json'], def)), 'json');
  assert.throws(() => outputFormat(parseArgs(['--format', '{{.ID}}'], def)), /--format "\{\{.ID\}\}" is not supported: use table or json/);
  assert.equal(json({ b: Buffer.from('hi') }), '{\n  "b": "aGk="\n}\n');
});
