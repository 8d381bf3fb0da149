// Registry auth decisions: WWW-Authenticate parsing (several challenges, quoting, escapes) and token URLs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basicAuth, parseChallenges, repoScope, tokenUrl } from './registry-auth.ts';

test('registry-auth: parses Bearer and Basic challenges as registries send them', () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } },
  ]);
  assert.deepEqual(parseChallenges('Basic realm="gantry test"'), [{ scheme: 'basic', params: { realm: 'gantry test' } }]);
  assert.deepEqual(parseChallenges('Bearer realm="a\\"b", error="insufficient_scope"'), [{ scheme: 'bearer', params: { realm: 'a"b', error: 'insufficient_scope' } }]);
  assert.deepEqual(parseChallenges('Basic realm=x, Bearer realm="y"').map((c) => c.scheme), ['basic', 'bearer']);
  assert.deepEqual(parseChallenges(undefined), []);
  assert.deepEqual(parseChallenges(''), []);
});

test('registry-auth: token URL carries service and every scope', () => {
  const ch = { scheme: 'bearer', params: { realm: 'http://127.0.0.1:9/token?x=1', service: 'reg' } };
  const u = new URL(tokenUrl(ch, [repoScope('a/b', ['pull', 'push']), repoScope('c', ['pull'])]));
  assert.equal(u.searchParams.get('service'), 'reg');
  assert.equal(u.searchParams.get('x'), '1');
  assert.deepEqual(u.searchParams.getAll('scope'), ['repository:a/b:pull,push', 'repository:c:pull']);
  assert.throws(() => tokenUrl({ scheme: 'bearer', params: {} }, []), /without a realm/);
  assert.equal(basicAuth('u', 'p:w'), `Basic ${Buffer.from('u:p:w').toString('base64')}`);
});
