// `gantry cluster unlock`, `gantry cluster unlock-key [-q] [--rotate]` and `gantry cluster update
// --autolock=true|false`: autolock as Docker's swarm has it (service Autolock on the host's socket).
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { bool, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { unary } from '../connection.ts';
import { AutolockClient } from '../../proto/gen/gantry/v1/autolock.ts';

export function autolock(ctx: CommandContext) {
  const conn = ctx.connect();
  const c = conn.client(AutolockClient);
  return {
    unlock: (key: string) => unary(conn, c.unlock.bind(c), { key }, 120_000),
    unlockKey: (rotate: boolean) => unary(conn, c.unlockKey.bind(c), { rotate }, 60_000),
    setAutolock: (enabled: boolean) => unary(conn, c.setAutolock.bind(c), { enabled }, 60_000),
  };
}

/** What `init --autolock`, `cluster update --autolock=true` and `unlock-key` print, as Docker does. */
export function unlockKeyInstructions(key: string): string {
  return (
    'To unlock a cluster manager after it restarts, run the `gantry cluster unlock`\n' +
    'command and provide the following key:\n\n' +
    `    ${key}\n\n` +
    'Please remember to store this key in a password manager, since without it you\n' +
    'will not be able to restart the manager.\n'
  );
}

/** A prompt on a terminal that does not echo what is typed (the key). */
function promptHidden(ctx: CommandContext): Promise<string> {
  const stdin = process.stdin;
  ctx.err.write('Please enter unlock key: ');
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve) => {
    let typed = '';
    const done = (value: string) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      ctx.err.write('\n');
      resolve(value);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(typed.trim());
        if (ch === '\u0003' || ch === '\u0004') return done(''); // Ctrl-C, Ctrl-D
        typed = ch === '\u007f' || ch === '\b' ? typed.slice(0, -1) : typed + ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** The key from --key-file, else stdin: a prompt on a terminal (no echo), the first line of a pipe. */
async function readKey(file: string | undefined, ctx: CommandContext): Promise<string> {
  if (file) return (await readFile(file, 'utf8')).trim();
  const stdin = process.stdin;
  if (stdin.isTTY) return promptHidden(ctx);
  const rl = createInterface({ input: stdin, terminal: false });
  try {
    for await (const line of rl) return line.trim();
    return '';
  } finally {
    rl.close();
  }
}

const unlock: Command = {
  path: ['cluster', 'unlock'],
  summary: 'Unlock a locked manager (asks for the unlock key)',
  usage: 'gantry cluster unlock [--key-file FILE]',
  flags: [{ name: 'key-file', kind: 'string', help: 'read the unlock key from this file instead of stdin' }],
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError('cluster unlock takes no arguments: it reads the key from stdin or --key-file');
    const key = await readKey(str(args, 'key-file'), ctx);
    if (!key) throw new UsageError('no unlock key given (stdin was empty): pipe it in or use --key-file');
    await autolock(ctx).unlock(key);
    ctx.out.write('This manager is unlocked.\n');
    return 0;
  },
};

const unlockKey: Command = {
  path: ['cluster', 'unlock-key'],
  summary: 'Show or rotate the unlock key of an autolocked cluster',
  usage: 'gantry cluster unlock-key [-q] [--rotate]',
  flags: [
    { name: 'rotate', kind: 'bool', help: 'replace the key (every manager re-wraps its keys; the old key stops working)' },
    { name: 'quiet', short: 'q', kind: 'bool', help: 'print only the key' },
  ],
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError('cluster unlock-key takes no arguments');
    const res = await autolock(ctx).unlockKey(bool(args, 'rotate'));
    if (!res.autolock) {
      ctx.err.write('Error: autolock is off for this cluster: turn it on with `gantry cluster update --autolock=true`\n');
      return 1;
    }
    if (bool(args, 'quiet')) ctx.out.write(`${res.key}\n`);
    else {
      if (bool(args, 'rotate')) ctx.out.write('Successfully rotated manager unlock key.\n\n');
      ctx.out.write(unlockKeyInstructions(res.key));
    }
    return 0;
  },
};

const update: Command = {
  path: ['cluster', 'update'],
  summary: 'Update the cluster (--autolock=true|false)',
  usage: 'gantry cluster update --autolock=true|false',
  flags: [{ name: 'autolock', kind: 'bool', help: 'keep managers\' keys wrapped at rest with an unlock key (true|false)' }],
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError('cluster update takes no arguments');
    if (!args.flags.has('autolock')) throw new UsageError('nothing to update: give --autolock=true or --autolock=false');
    const on = bool(args, 'autolock');
    const res = await autolock(ctx).setAutolock(on);
    ctx.out.write('Cluster updated.\n');
    if (on) ctx.out.write(`\n${unlockKeyInstructions(res.key)}`);
    return 0;
  },
};

export const commands: Command[] = [unlock, unlockKey, update];
