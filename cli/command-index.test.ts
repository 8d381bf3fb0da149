import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import type { Command } from './command.ts';
import { COMMAND_MODULES, loadCommands } from './command-index.ts';

const firstWords = (cs: Command[]) => new Set(cs.flatMap((c) => [c.path, ...(c.aliases ?? [])].map((p) => p[0])));

test('command index: every module lists exactly the first words of its commands', async () => {
  for (const m of COMMAND_MODULES) {
    const words = firstWords((await m.load()).commands);
    assert.deepEqual([...words].sort(), [...new Set(m.words)].sort());
  }
});

test('command index: every cli/commands module with commands is listed', async () => {
  const listed = new Set<unknown>();
  for (const m of COMMAND_MODULES) listed.add(await m.load());
  const dir = new URL('./commands/', import.meta.url);
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts') && !n.endsWith('.test.ts'))) {
    const mod = (await import(new URL(f, dir).href)) as { commands?: Command[] };
    if (mod.commands) assert.ok(listed.has(mod), `cli/commands/${f} exports commands but is not in COMMAND_MODULES`);
  }
});

test('command index: a first word loads only the modules that claim it; others load everything', async () => {
  const all = await loadCommands(undefined);
  const service = await loadCommands('service');
  assert.ok(service.length > 0 && service.every((c) => c.path[0] === 'service'));
  assert.ok(firstWords(await loadCommands('pull')).has('image'));
  assert.equal((await loadCommands('no-such-word')).length, all.length);
});
