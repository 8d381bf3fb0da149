// The control API's part of rolling updates, through the real gRPC service on a MemoryStore: a task
// change starts an update, a scale does not, the same spec again resumes a paused one, rollback starts a rollback.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ServiceSpec, UpdateState } from '../../proto/gen/gantry/v1/objects.ts';
import { call, startTestServer } from '../controlapi/test-server.ts';
import { fixtures } from '../store/fixtures.ts';

test('controlapi/update: a task change starts an update, a scale does not; the same spec resumes a paused update; rollback starts a rollback', async (t) => {
  const s = await startTestServer();
  t.after(() => s.close());
  const c = s.client;
  const base = fixtures.service({ name: 'web', replicas: 2, image: 'app:1' }).spec!;
  const v1 = await call(c.createService.bind(c), { spec: ServiceSpec.fromPartial(base), noResolveImage: false });
  assert.equal(v1.updateStatus, undefined);

  const scaled = await call(c.updateService.bind(c), { ref: 'web', version: 0, spec: { ...v1.spec!, mode: { $case: 'replicated', value: { replicas: 3 } } }, rollback: '', noResolveImage: false });
  assert.equal(scaled.updateStatus, undefined, 'a scale starts no update');

  const spec2 = structuredClone(scaled.spec!);
  spec2.task!.container!.image = 'app:2';
  const v2 = await call(c.updateService.bind(c), { ref: 'web', version: 0, spec: spec2, rollback: '', noResolveImage: false });
  assert.equal(v2.updateStatus?.state, UpdateState.UPDATE_STATE_UPDATING);
  assert.equal(v2.specVersion, v1.specVersion + 1);

  // the updater pauses it (as it would on a failure)
  const paused = { ...v2, updateStatus: { ...v2.updateStatus!, state: UpdateState.UPDATE_STATE_PAUSED, message: 'update paused: task web.1 on n1 failed: exit 1 after 1s' } };
  const w = await s.store.commit([{ op: 'update', kind: 'services', object: paused }]);
  assert.ok(w.ok);
  await s.store.waitFor(w.revision);
  const resumed = await call(c.updateService.bind(c), { ref: 'web', version: 0, spec: spec2, rollback: '', noResolveImage: false });
  assert.equal(resumed.updateStatus?.state, UpdateState.UPDATE_STATE_UPDATING);
  assert.equal(resumed.updateStatus?.message, 'update resumed');
  assert.ok((resumed.updateStatus?.startedAt ?? 0) >= (v2.updateStatus?.startedAt ?? 0));
  assert.equal(resumed.specVersion, v2.specVersion, 'a resume changes no spec');

  const back = await call(c.updateService.bind(c), { ref: 'web', version: 0, rollback: 'previous', noResolveImage: false });
  assert.equal(back.updateStatus?.state, UpdateState.UPDATE_STATE_ROLLBACK_STARTED);
  assert.equal(back.spec?.task?.container?.image, 'app:1');
});
