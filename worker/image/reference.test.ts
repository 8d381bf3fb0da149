// Reference parsing: Docker's defaults and refusals, table-driven.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { familiarString, formatReference, parseReference } from './reference.ts';

const D = `sha256:${'a'.repeat(64)}`;

test('reference: parses what docker pull accepts, with docker.io defaults', () => {
  const cases: Array<[string, string]> = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['library/busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['team/app', 'docker.io/team/app:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/busybox:1', 'docker.io/library/busybox:1'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/app:v1', 'localhost:5000/app:v1'],
    [`host:5000/team/app@${D}`, `host:5000/team/app@${D}`],
    [`127.0.0.1:5000/x:1@${D}`, `127.0.0.1:5000/x:1@${D}`],
    ['registry.example.com/a/b/c:tag_1.2-x', 'registry.example.com/a/b/c:tag_1.2-x'],
    ['a__b/c-d.e', 'docker.io/a__b/c-d.e:latest'],
    ['[::1]:5000/x', '[::1]:5000/x:latest'],
  ];
  for (const [input, want] of cases) {
    const r = parseReference(input);
    assert.ok(r.ok, `${input}: ${!r.ok && r.reason}`);
    assert.equal(formatReference(r.ref), want, input);
  }
});

test('reference: refuses malformed ones with the reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['busybox:', /tag "" must match/],
    ['busybox:-x', /tag "-x"/],
    ['a/../b', /path component ".."/],
    ['a//b', /path component ""/],
    ['busybox@sha256:abc', /ALGORITHM:HEX/],
    [`busybox@sha256:${'a'.repeat(40)}`, /64 lowercase hex/],
    ['busybox@md5', /ALGORITHM:HEX/],
    ['a'.repeat(64), /64-byte hexadecimal/],
    ['host:99999999999999999999/x y', /./],
    ['-bad/x', /path component "-bad"/],
    [`${'x'.repeat(250)}/yyyyyy`, /longer than 255/],
  ];
  for (const [input, want] of cases) {
    const r = parseReference(input);
    assert.equal(r.ok, false, input);
    if (!r.ok) {
      assert.match(r.reason, want, input);
      assert.match(r.reason, /^invalid reference/);
    }
  }
});

test('reference: familiar form drops docker.io and library/', () => {
  const f = (s: string) => {
    const r = parseReference(s);
    assert.ok(r.ok);
    return familiarString(r.ref);
  };
  assert.equal(f('busybox'), 'busybox:latest');
  assert.equal(f('docker.io/team/app:1'), 'team/app:1');
  assert.equal(f('127.0.0.1:5000/x:1'), '127.0.0.1:5000/x:1');
});
