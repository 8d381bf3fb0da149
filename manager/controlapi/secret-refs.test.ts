// A service may only name secrets and configs that exist; references resolve to their ids.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Secret } from '../../proto/gen/gantry/v1/objects.ts';
import { MemoryStore } from '../store/memory.ts';
import { fixtures } from '../store/fixtures.ts';
import { resolveSecretRefs } from './secret-refs.ts';
import type { ValidServiceSpec } from './validate.ts';

test('secret refs: a known secret resolves to its id; an unknown secret or config is a problem that says what to do', async () => {
  const store = new MemoryStore();
  const secret = Secret.fromPartial({ id: 'sec1', spec: { name: 'db-pass', labels: {}, data: Buffer.from('sealed') }, size: 6, digest: 'x' });
  await fixtures.seed(store, { secrets: [secret] });
  const spec = fixtures.service({ name: 'web' }).spec as unknown as ValidServiceSpec;
  spec.task.container.files = {
    secrets: [
      { secretId: '', secretName: 'db-pass', target: 'db-pass', mode: 0o444 },
      { secretId: '', secretName: 'typo', target: 'typo', mode: 0o444 },
    ],
    configs: [{ secretId: '', secretName: 'nginx.conf', target: '/etc/nginx.conf', mode: 0o444 }],
  };
  assert.deepEqual(resolveSecretRefs(store.view(), spec), [
    'secret "typo" not found: create it first (gantry secret create typo FILE)',
    'config "nginx.conf" not found: create it first (gantry config create nginx.conf FILE)',
  ]);
  assert.equal(spec.task.container.files.secrets[0].secretId, 'sec1');
});
