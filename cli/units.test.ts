// Units the CLI parses and prints: sizes, CPUs, durations, Docker's human ages.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatDuration, humanDuration, parseBytes, parseCount, parseCpus, parseDuration } from './units.ts';

test('units: sizes are binary whatever the suffix, like Docker', () => {
  const ok: Array<[string, number]> = [
    ['512MiB', 512 * 1024 ** 2],
    ['12MB', 12 * 1024 ** 2],
    ['512m', 512 * 1024 ** 2],
    ['1g', 1024 ** 3],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['1024', 1024],
    ['64k', 65536],
    ['100b', 100],
  ];
  for (const [text, bytes] of ok) assert.deepEqual(parseBytes(text), { ok: true, value: bytes }, text);
  for (const bad of ['', 'MiB', '12 XB', '-1m', '1i', '1ib', 'lots']) assert.equal(parseBytes(bad).ok, false, bad);
  const e = parseBytes('lots');
  assert.equal(!e.ok && e.error, '"lots" is not a size: write a number with an optional unit (b, k, m, g, t; e.g. 512MiB, 1.5g)');
});

test('units: CPUs become nano-CPUs', () => {
  assert.deepEqual(parseCpus('0.5'), { ok: true, value: 500_000_000 });
  assert.deepEqual(parseCpus('2'), { ok: true, value: 2e9 });
  assert.deepEqual(parseCpus('1.000000001'), { ok: true, value: 1_000_000_001 });
  for (const bad of ['', '-1', '1.2.3', 'one', '.5x']) assert.equal(parseCpus(bad).ok, false, bad);
});

test('units: Go durations become milliseconds', () => {
  const ok: Array<[string, number]> = [
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['1.5h', 5_400_000],
    ['300ms', 300],
    ['0', 0],
    ['0s', 0],
    ['2h45m', 9_900_000],
    ['1500us', 2],
  ];
  for (const [text, ms] of ok) assert.deepEqual(parseDuration(text), { ok: true, value: ms }, text);
  for (const bad of ['', '10', '5 s', '-1s', '1d', 's', '1m x']) assert.equal(parseDuration(bad).ok, false, bad);
});

test('units: counts are whole numbers ≥ 0', () => {
  assert.deepEqual(parseCount('3', '--replicas'), { ok: true, value: 3 });
  assert.deepEqual(parseCount('-1', '--replicas'), { ok: false, error: '--replicas must be a whole number ≥ 0, not "-1"' });
  assert.equal(parseCount('1.5', '--replicas').ok, false);
});

test('units: printing sizes, durations and ages', () => {
  assert.equal(formatBytes(512 * 1024 ** 2), '512MiB');
  assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5GiB');
  assert.equal(formatBytes(100), '100B');
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(300), '300ms');
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(3_600_000), '1h0m0s');
  assert.equal(humanDuration(500), 'Less than a second');
  assert.equal(humanDuration(1000), '1 second');
  assert.equal(humanDuration(5_000), '5 seconds');
  assert.equal(humanDuration(61_000), 'About a minute');
  assert.equal(humanDuration(30 * 60_000), '30 minutes');
  assert.equal(humanDuration(3 * 3_600_000), '3 hours');
  assert.equal(humanDuration(3 * 86_400_000), '3 days');
  assert.equal(humanDuration(21 * 86_400_000), '3 weeks');
});
