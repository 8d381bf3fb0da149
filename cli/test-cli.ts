// Test helper: runs cluster commands the way cli/gantry.ts does (parse, run, UsageError → 2,
// CallError → 1 "Error: ..."), with a context whose output is captured and that dials a test server.
import { parseArgs, UsageError } from './args.ts';
import type { Command, CommandContext } from './command.ts';
import { CallError, type Connection, dial } from './connection.ts';
import { commands as node } from './commands/node.ts';
import { commands as service } from './commands/service.ts';
import { commands as swarm } from './commands/swarm.ts';

const ALL: Command[] = [...service, ...node, ...swarm];

function sink(): { stream: NodeJS.WritableStream; text: () => string } {
  let buf = '';
  return {
    stream: {
      write: (s: string | Uint8Array) => {
        buf += s.toString();
        return true;
      },
    } as unknown as NodeJS.WritableStream,
    text: () => buf,
  };
}

export async function runCli(target: string, argv: string[], opts: { isTTY?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; out: string; err: string }> {
  let best: { c: Command; n: number } | undefined;
  for (const c of ALL) {
    for (const p of [c.path, ...(c.aliases ?? [])]) {
      if (p.every((w, i) => argv[i] === w) && (!best || p.length > best.n)) best = { c, n: p.length };
    }
  }
  if (!best) throw new Error(`no command for ${argv.join(' ')}`);
  const out = sink();
  const err = sink();
  let conn: Connection | undefined;
  const ctx: CommandContext = {
    connect: () => (conn ??= dial(target)),
    out: out.stream,
    err: err.stream,
    isTTY: opts.isTTY ?? false,
    env: opts.env ?? {},
  };
  let code: number;
  try {
    const args = parseArgs(argv.slice(best.n), best.c.flags, { stopAtPositional: best.c.stopAtPositional });
    code = await best.c.run(args, ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      err.stream.write(`gantry ${best.c.path.join(' ')}: ${e.message}\n`);
      code = 2;
    } else if (e instanceof CallError) {
      err.stream.write(`Error: ${e.message}\n`);
      code = 1;
    } else throw e;
  } finally {
    conn?.close();
  }
  return { code, out: out.text(), err: err.text() };
}
