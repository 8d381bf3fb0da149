// `import --change` lines applied to an image config: table-driven, including refusals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyChanges } from './changes.ts';

test('changes: Dockerfile instructions set the config like docker import -c', () => {
  const r = applyChanges({ Env: ['A=1'] }, [
    'CMD ["nginx", "-g", "daemon off;"]',
    'ENTRYPOINT /entry.sh',
    'ENV A=2 B="two words"',
    'ENV LEGACY value with spaces',
    'WORKDIR /srv',
    'USER 1000:1000',
    'EXPOSE 80 53/udp',
    'LABEL a=b c="d e"',
    'STOPSIGNAL SIGQUIT',
    'VOLUME ["/data"]',
  ]);
  assert.ok(r.ok);
  assert.deepEqual(r.config, {
    Env: ['A=2', 'B=two words', 'LEGACY=value with spaces'],
    Cmd: ['nginx', '-g', 'daemon off;'],
    Entrypoint: ['/bin/sh', '-c', '/entry.sh'],
    WorkingDir: '/srv',
    User: '1000:1000',
    ExposedPorts: { '80/tcp': {}, '53/udp': {} },
    Labels: { a: 'b', c: 'd e' },
    StopSignal: 'SIGQUIT',
    Volumes: { '/data': {} },
  });
});

test('changes: unsupported or malformed instructions are refused with the reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['RUN apt-get update', /RUN is not supported by import/],
    ['EXPOSE http', /EXPOSE http: want PORT\[\/PROTO\]/],
    ['ENV', /ENV needs KEY=VALUE/],
    ['', /expected INSTRUCTION ARGS/],
  ];
  for (const [line, want] of cases) {
    const r = applyChanges({}, [line]);
    assert.equal(r.ok, false, line);
    if (!r.ok) assert.match(r.reason, want);
  }
});
