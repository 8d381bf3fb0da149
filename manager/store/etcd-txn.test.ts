// Unit tests of the pure write → transaction translation: keys, compares, chunking within etcd's limits,
// conflicts read back from a failed transaction, and recognising our own write after an ambiguous retry.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KeyValue } from './etcd-rpc.ts';
import { buildTxn, chunk, compareFor, conflictsFrom, encodeWrite, landed, parseKey } from './etcd-txn.ts';
import { fixtures } from './fixtures.ts';
import type { Write } from './types.ts';

const P = '/gantry/v1/';
const kv = (mod: number, value: Buffer = Buffer.alloc(0)): KeyValue => ({
  key: Buffer.from('k'),
  create_revision: '1',
  mod_revision: String(mod),
  version: '1',
  value,
  lease: '0',
});

describe('etcd txn', () => {
  test('etcd txn: keys parse back to kind and id; election and foreign keys are told apart', () => {
    assert.deepEqual(parseKey(P, Buffer.from('/gantry/v1/tasks/abc')), { kind: 'tasks', id: 'abc' });
    assert.deepEqual(parseKey(P, Buffer.from('/gantry/v1/election/1f-1')), { election: '/gantry/v1/election/1f-1' });
    assert.equal(parseKey(P, Buffer.from('/gantry/v1/widgets/x')), undefined);
    assert.equal(parseKey(P, Buffer.from('/other/tasks/x')), undefined);
  });

  test('etcd txn: each write compares what its rule needs', () => {
    const n = fixtures.node({ id: 'n1' });
    n.meta!.version = 42;
    const cases: Array<[Write, object]> = [
      [{ op: 'create', kind: 'nodes', object: n }, { result: 'Equal', target: 'Create', create_revision: 0 }],
      [{ op: 'update', kind: 'nodes', object: n }, { result: 'Equal', target: 'Mod', mod_revision: 42 }],
      [{ op: 'delete', kind: 'nodes', id: 'n1', version: 7 }, { result: 'Equal', target: 'Mod', mod_revision: 7 }],
      [{ op: 'delete', kind: 'nodes', id: 'n1' }, { result: 'Greater', target: 'Version', version: 0 }],
      [{ op: 'update', kind: 'sessions', object: fixtures.session({ nodeId: 'n1' }) }, { result: 'Greater', target: 'Version', version: 0 }],
    ];
    for (const [w, want] of cases) {
      const { key, ...rest } = compareFor(encodeWrite(P, w, 5));
      assert.deepEqual(rest, want, JSON.stringify(w.op));
      assert.equal(key.toString(), `${P}${w.kind}/n1`);
    }
  });

  test('etcd txn: lease writes carry the lease id; the failure branch reads every key back', () => {
    const s = fixtures.session({ nodeId: 'n1' });
    const t = buildTxn(
      [encodeWrite(P, { op: 'create', kind: 'sessions', object: s, lease: true }, 1), encodeWrite(P, { op: 'delete', kind: 'tasks', id: 't' }, 1)],
      '99',
    );
    assert.equal((t.success[0] as { request_put: { lease: string } }).request_put.lease, '99');
    assert.ok('request_delete_range' in t.success[1]);
    assert.equal(t.failure.length, 2);
  });

  test('etcd txn: batches split at 128 ops, at the byte budget, and at a repeated key', () => {
    const es = Array.from({ length: 300 }, () => encodeWrite(P, { op: 'create', kind: 'tasks', object: fixtures.task() }, 1));
    assert.deepEqual(chunk(es).map((c) => c.length), [128, 128, 44]);
    const big = fixtures.task();
    big.spec!.container!.env = [`X=${'x'.repeat(400_000)}`];
    const bigs = Array.from({ length: 5 }, () => encodeWrite(P, { op: 'create', kind: 'tasks', object: { ...big, id: `${Math.random()}` } }, 1));
    assert.deepEqual(chunk(bigs).map((c) => c.length), [2, 2, 1]);
    const t = fixtures.task({ id: 'same' });
    const dup = [
      encodeWrite(P, { op: 'create', kind: 'tasks', object: t }, 1),
      encodeWrite(P, { op: 'create', kind: 'tasks', object: fixtures.task() }, 1),
      encodeWrite(P, { op: 'delete', kind: 'tasks', id: 'same' }, 1),
    ];
    assert.deepEqual(chunk(dup).map((c) => c.length), [2, 1]);
  });

  test('etcd txn: conflicts come from the keys as read back', () => {
    const a = fixtures.node({ id: 'a' });
    a.meta!.version = 5;
    const es = [
      encodeWrite(P, { op: 'update', kind: 'nodes', object: a }, 1),
      encodeWrite(P, { op: 'create', kind: 'nodes', object: fixtures.node({ id: 'b' }) }, 1),
      encodeWrite(P, { op: 'delete', kind: 'nodes', id: 'c' }, 1),
      encodeWrite(P, { op: 'update', kind: 'nodes', object: { ...a, id: 'd' } }, 1),
    ];
    assert.deepEqual(conflictsFrom(es, [kv(6), kv(3), undefined, kv(5)]), [
      { kind: 'nodes', id: 'a', reason: 'version' },
      { kind: 'nodes', id: 'b', reason: 'exists' },
      { kind: 'nodes', id: 'c', reason: 'missing' },
    ]);
  });

  test('etcd txn: a retried write recognises its own value in place', () => {
    const e = encodeWrite(P, { op: 'create', kind: 'nodes', object: fixtures.node() }, 1);
    assert.equal(landed(e, kv(9, e.value)), true);
    assert.equal(landed(e, kv(9, Buffer.from('other'))), false);
    assert.equal(landed(e, undefined), false);
    const d = encodeWrite(P, { op: 'delete', kind: 'nodes', id: 'x' }, 1);
    assert.equal(landed(d, undefined), true);
  });
});
