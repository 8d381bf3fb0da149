// `gantry secret create|ls|inspect|rm` and, through the same code, `gantry config ...`. The value
// is read from a file or stdin and sent once; nothing here ever prints it (the API never returns it).
import { readFile } from 'node:fs/promises';
import { bool, list, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { unary } from '../connection.ts';
import { type SecretInfo, SecretsClient } from '../../proto/gen/gantry/v1/secrets.ts';

async function readValue(file: string, ctx: CommandContext): Promise<Buffer> {
  if (file !== '-') return readFile(file);
  const input = (ctx as CommandContext & { in?: NodeJS.ReadableStream }).in ?? process.stdin;
  const parts: Buffer[] = [];
  for await (const c of input) parts.push(Buffer.from(c as Buffer));
  return Buffer.concat(parts);
}

function labels(args: string[]): Record<string, string> {
  return Object.fromEntries(args.map((l) => [l.split('=')[0], l.split('=').slice(1).join('=')]));
}

function age(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s} seconds ago` : s < 7200 ? `${Math.round(s / 60)} minutes ago` : `${Math.round(s / 3600)} hours ago`;
}

export function secretCommands(word: 'secret' | 'config'): Command[] {
  const config = word === 'config';
  const create: Command = {
    path: [word, 'create'],
    summary: `Create a ${word} from a file or STDIN (-)`,
    usage: `gantry ${word} create [--label K=V] NAME FILE|-`,
    flags: [{ name: 'label', short: 'l', kind: 'list', help: `labels on the ${word}` }],
    async run(args, ctx) {
      const [name, file] = args.positionals;
      if (!name || !file || args.positionals.length > 2) throw new UsageError(`${word} create takes NAME and FILE (or - for standard input)`);
      const data = await readValue(file, ctx);
      const conn = ctx.connect();
      const c = conn.client(SecretsClient);
      const res = await unary(conn, c.createSecret.bind(c), { spec: { name, labels: labels(list(args, 'label')), data }, config });
      ctx.out.write(`${res.id}\n`);
      return 0;
    },
  };
  const ls: Command = {
    path: [word, 'ls'],
    aliases: [[word, 'list']],
    summary: `List ${word}s`,
    usage: `gantry ${word} ls [-q]`,
    flags: [
      { name: 'quiet', short: 'q', kind: 'bool', help: 'only ids' },
      { name: 'format', kind: 'string', help: 'json for scripts' },
    ],
    async run(args, ctx) {
      const conn = ctx.connect();
      const c = conn.client(SecretsClient);
      const res = await unary(conn, c.listSecrets.bind(c), { config });
      if (bool(args, 'quiet')) {
        for (const s of res.secrets) ctx.out.write(`${s.id}\n`);
      } else if (str(args, 'format') === 'json') {
        ctx.out.write(`${JSON.stringify(res.secrets, null, 2)}\n`);
      } else {
        const rows = [['ID', 'NAME', 'SIZE', 'CREATED', 'USED BY'], ...res.secrets.map((s) => [s.id, s.name, `${s.size}B`, age(s.createdAt), s.usedBy.join(',') || '-'])];
        const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
        for (const r of rows) ctx.out.write(`${r.map((v, i) => v.padEnd(w[i])).join('   ').trimEnd()}\n`);
      }
      return 0;
    },
  };
  const inspect: Command = {
    path: [word, 'inspect'],
    summary: `Show a ${word} (never its value)`,
    usage: `gantry ${word} inspect NAME|ID...`,
    flags: [],
    async run(args, ctx) {
      if (args.positionals.length === 0) throw new UsageError(`${word} inspect takes at least one NAME or ID`);
      const conn = ctx.connect();
      const c = conn.client(SecretsClient);
      const out: SecretInfo[] = [];
      for (const ref of args.positionals) out.push(await unary(conn, c.getSecret.bind(c), { ref, config }));
      ctx.out.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    },
  };
  const rm: Command = {
    path: [word, 'rm'],
    aliases: [[word, 'remove']],
    summary: `Remove ${word}s (refused while a service uses one)`,
    usage: `gantry ${word} rm NAME|ID...`,
    flags: [],
    async run(args, ctx) {
      if (args.positionals.length === 0) throw new UsageError(`${word} rm takes at least one NAME or ID`);
      const conn = ctx.connect();
      const c = conn.client(SecretsClient);
      let code = 0;
      for (const ref of args.positionals) {
        try {
          await unary(conn, c.removeSecret.bind(c), { ref, config });
          ctx.out.write(`${ref}\n`);
        } catch (err) {
          ctx.err.write(`Error: ${(err as Error).message}\n`);
          code = 1;
        }
      }
      return code;
    },
  };
  return [create, ls, inspect, rm];
}

export const commands: Command[] = secretCommands('secret');
