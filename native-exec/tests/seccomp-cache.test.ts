// tests/seccomp-cache.test.ts — the compiled-seccomp cache (<root>/.seccomp@cache): cold and warm
// containers and execs block the same syscalls, profiles get their own entries, bad entries are rebuilt.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { defaultSeccompProfile } from '../../worker/runtime/seccomp-default.ts';
import { EXEC_DIR, Harness, type Spec, tempDir, waitFor } from './helpers.ts';

const CAPS = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
const TRACE = { GANTRY_EXEC_TRACE: '1' };

/** Blocks namespace, key and mount syscalls; allows everything else (personality included). */
function profileA(): Spec {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [{ names: ['unshare', 'keyctl', 'mount'], action: 'SCMP_ACT_ERRNO' }],
  };
}
/** A plus one more blocked syscall, added last (the difference is at the end of the key). */
function profileB(): Spec {
  const p = profileA();
  p.syscalls.push({ names: ['personality'], action: 'SCMP_ACT_ERRNO' });
  return p;
}

describe('gantry-exec seccomp cache', () => {
  const h = new Harness();
  after(() => h.cleanup());

  /** A fresh state root (so a fresh cache) for one test. */
  const freshRoot = () => {
    h.root = tempDir('gx-root');
    h.dirs.push(h.root);
    return join(h.root, '.seccomp@cache');
  };
  const entries = (cache: string) => (existsSync(cache) && statSync(cache).isDirectory() ? readdirSync(cache).filter((f) => f.endsWith('.bpf')).sort() : []);

  /** Run the probe under profile; returns its report and whether the cache was hit. */
  const probe = (profile: Spec, edit: (s: Spec) => void = () => {}) => {
    const { id, bundle } = h.bundle(['/bin/probe'], (s) => {
      s.linux.seccomp = profile;
      edit(s);
    });
    const r = h.gx(['run', '--bundle', bundle, id], { env: TRACE });
    assert.equal(r.status, 0, r.stderr);
    const hit = /seccomp cache hit/.test(r.stderr);
    assert.equal(hit, !/seccomp cache miss/.test(r.stderr), `one of hit/miss is traced: ${r.stderr}`);
    return { p: JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))), hit };
  };
  const assertBlocks = (p: Spec, what: string) => {
    assert.equal(p.seccomp, '2', `${what}: filter mode`);
    for (const k of ['keyctl', 'unshare', 'mount']) assert.equal(p[k], 'EPERM', `${what}: ${k}`);
    assert.equal(p.cwd, '/', `${what}: ordinary syscalls work`);
  };

  test('seccomp cache: the default profile blocks the same syscalls from a cold and a warm cache', () => {
    const cache = freshRoot();
    const profile = defaultSeccompProfile(new Set(CAPS));
    const cold = probe(profile);
    assert.equal(cold.hit, false, 'cold: compiled');
    assertBlocks(cold.p, 'cold');
    assert.equal(cold.p.personality, 'ok', 'cold: personality(0xffffffff) is allowed by the default profile');
    const files = entries(cache);
    assert.equal(files.length, 1, `one entry: ${files}`);
    assert.match(files[0], /^[0-9a-f]{64}\.bpf$/);
    const st = statSync(join(cache, files[0]));
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(statSync(cache).mode & 0o777, 0o700);
    assert.equal(st.size % 8, 0);
    const warm = probe(profile);
    assert.equal(warm.hit, true, 'warm: taken from the cache');
    assertBlocks(warm.p, 'warm');
    assert.equal(warm.p.personality, 'ok');
    assert.deepEqual(entries(cache), files, 'no new entry');
  });

  test('seccomp cache: key order does not matter, one more blocked syscall gets its own entry', () => {
    const cache = freshRoot();
    const a = probe(profileA());
    assertBlocks(a.p, 'A');
    assert.equal(a.p.personality, 'ok', 'A allows personality');
    // same profile, members in another order: same entry
    const reordered = { syscalls: [{ action: 'SCMP_ACT_ERRNO', names: ['unshare', 'keyctl', 'mount'] }], architectures: profileA().architectures, defaultAction: 'SCMP_ACT_ALLOW' };
    assert.equal(probe(reordered).hit, true, 'reordered keys hit the same entry');
    assert.equal(entries(cache).length, 1);
    const b = probe(profileB());
    assert.equal(b.hit, false, 'B is not A');
    assertBlocks(b.p, 'B');
    assert.equal(b.p.personality, 'EPERM', 'B blocks personality');
    assert.equal(entries(cache).length, 2, 'B has its own entry');
    const a2 = probe(profileA());
    assert.equal(a2.hit, true);
    assert.equal(a2.p.personality, 'ok', 'A still allows personality after B was cached');
    const b2 = probe(profileB());
    assert.equal(b2.hit, true);
    assert.equal(b2.p.personality, 'EPERM', 'B from the cache still blocks personality');
  });

  test('seccomp cache: no_new_privs follows process.noNewPrivileges, cold and warm, with the spec flags', () => {
    // as with runc and Docker: the filter does not force no_new_privs, so setuid binaries work
    // under the default profile unless the spec asks for no_new_privs
    const profile = { ...profileA(), flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_TSYNC'] };
    for (const nnp of [false, true]) {
      freshRoot();
      for (const want of [false, true]) {
        const r = probe(profile, (s) => {
          s.process.noNewPrivileges = nnp;
        });
        assert.equal(r.hit, want);
        assertBlocks(r.p, want ? 'warm' : 'cold');
        assert.equal(r.p.noNewPrivs, nnp ? '1' : '0', `${want ? 'warm' : 'cold'}, noNewPrivileges ${nnp}: no_new_privs`);
      }
    }
  });

  test('seccomp cache: a hit loads the cached program itself', () => {
    const cache = freshRoot();
    probe(profileA());
    const [fa] = entries(cache);
    probe(profileB());
    const fb = entries(cache).find((f) => f !== fa);
    assert.ok(fb);
    // put B's program under A's name: a container with A now behaves as B, so the file is what is loaded
    writeFileSync(join(cache, fa), readFileSync(join(cache, fb)), { mode: 0o600 });
    const swapped = probe(profileA());
    assert.equal(swapped.hit, true);
    assert.equal(swapped.p.personality, 'EPERM', 'the program came from the cache file');
    rmSync(join(cache, fa));
    const rebuilt = probe(profileA());
    assert.equal(rebuilt.hit, false);
    assert.equal(rebuilt.p.personality, 'ok');
  });

  test('seccomp cache: a corrupt, short, non-RET-ending or oversized entry is ignored and rebuilt', () => {
    const cache = freshRoot();
    probe(profileA());
    const [f] = entries(cache);
    const path = join(cache, f);
    const good = readFileSync(path);
    const allowAll = Buffer.alloc(8);
    allowAll.writeUInt16LE(0x06, 0); // BPF_RET|BPF_K
    allowAll.writeUInt32LE(0x7fff0000, 4); // SECCOMP_RET_ALLOW
    const bad: [string, Buffer][] = [
      ['not a multiple of 8 bytes', Buffer.concat([good, Buffer.from('xyz')])],
      ['empty', Buffer.alloc(0)],
      ['cut after the first instruction (not a RET)', good.subarray(0, 8)],
      ['over BPF_MAXINSNS instructions', Buffer.concat(Array.from({ length: 4097 }, () => allowAll))],
    ];
    for (const [why, content] of bad) {
      writeFileSync(path, content, { mode: 0o600 });
      const r = probe(profileA());
      assert.equal(r.hit, false, `${why}: not used`);
      assertBlocks(r.p, why);
      assert.equal(r.p.personality, 'ok');
      assert.deepEqual(readFileSync(path), good, `${why}: rebuilt`);
    }
    assert.deepEqual(readdirSync(cache).filter((n) => n.endsWith('.tmp')), [], 'no tmp files left');
  });

  test('seccomp cache: an unusable cache dir means compiling every time, never a failed container', () => {
    const cache = freshRoot();
    writeFileSync(cache, 'not a dir'); // mkdir fails: as a read-only root would
    for (let i = 0; i < 2; i++) {
      const r = probe(profileA());
      assert.equal(r.hit, false);
      assertBlocks(r.p, `file in the way, run ${i}`);
    }
    rmSync(cache);
    mkdirSync(cache, { mode: 0o700 });
    chmodSync(cache, 0o777); // writable by others: not trusted
    probe(profileA());
    assert.deepEqual(entries(cache), [], 'nothing written into a world-writable dir');
    chmodSync(cache, 0o700);
    probe(profileA());
    assert.equal(entries(cache).length, 1);
    assert.equal(probe(profileA()).hit, true);
  });

  test('seccomp cache: the dir stays bounded and crash leftovers go, after a miss', () => {
    const cache = freshRoot();
    mkdirSync(cache, { mode: 0o700 });
    const fake = Array.from({ length: 129 }, (_, i) => `${i.toString(16).padStart(64, '0')}.bpf`);
    for (const f of fake) writeFileSync(join(cache, f), Buffer.alloc(8), { mode: 0o600 });
    const stale = join(cache, `.${'f'.repeat(64)}.1.tmp`);
    const fresh = join(cache, `.${'e'.repeat(64)}.2.tmp`); // another writer, right now
    writeFileSync(stale, 'x');
    writeFileSync(fresh, 'x');
    const old = new Date(Date.now() - 2 * 3600_000);
    utimesSync(stale, old, old);
    const r = probe(profileA());
    assert.equal(r.hit, false);
    assertBlocks(r.p, 'after prune');
    const left = entries(cache);
    assert.equal(left.length, 1, 'only the new entry is left');
    assert.ok(!fake.includes(left[0]));
    assert.ok(!existsSync(stale), 'a tmp file over an hour old is removed');
    assert.ok(existsSync(fresh), 'a recent tmp file is left to its writer');
    assert.equal(probe(profileA()).hit, true);
  });

  test('seccomp cache: exec gets the filter from a cold and a warm cache', async () => {
    const cache = freshRoot();
    const { id, bundle } = h.bundle(['sleep', '100'], (s) => {
      s.linux.seccomp = profileB();
    });
    assert.equal(h.gx(['create', '--bundle', bundle, id]).status, 0);
    assert.equal(h.gx(['start', id]).status, 0);
    await waitFor(() => (h.state(id).status === 'running' ? null : 'not running'));
    rmSync(cache, { recursive: true, force: true });
    for (const want of [false, true]) {
      const r = h.gx(['exec', id, '/bin/probe'], { env: TRACE });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(/seccomp cache hit/.test(r.stderr), want, `exec ${want ? 'warm' : 'cold'}: ${r.stderr}`);
      const p = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
      assertBlocks(p, `exec ${want ? 'warm' : 'cold'}`);
      assert.equal(p.personality, 'EPERM');
    }
    assert.equal(h.gx(['delete', '--force', id]).status, 0);
  });

  test('seccomp cache: SHA-256 and the canonical form (C unit checks)', () => {
    const dir = tempDir('gx-unit');
    h.dirs.push(dir);
    const bin = join(dir, 'unit');
    const src = (f: string) => join(EXEC_DIR, f);
    const cc = spawnSync('gcc', ['-std=gnu11', '-D_GNU_SOURCE', '-O1', '-o', bin, src('tests/seccomp_cache_unit.c'), src('src/seccomp_cache.c'), src('src/json.c'), src('src/util.c'), '-l:libseccomp.a'], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const r = spawnSync(bin, { encoding: 'utf8' });
    assert.equal(r.stdout, 'ok\n', r.stdout + r.stderr);
    assert.equal(r.status, 0);
  });
});
