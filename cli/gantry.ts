#!/usr/bin/env node
// gantry: the CLI. Loads the cli/commands/*.ts module argv's first word names (cli/command-index.ts),
// picks the command (longest path first), parses its flags and runs it. The work happens in gantryd.
import { enableCompileCache } from 'node:module';
import { type ParsedArgs, parseArgs, UsageError } from './args.ts';
import type { Command, CommandContext } from './command.ts';
import { loadCommands } from './command-index.ts';
import type { Connection } from './connection.ts';

function paths(c: Command): string[][] {
  return [c.path, ...(c.aliases ?? [])];
}

export function findCommand(argv: string[], commands: Command[]): { command: Command; rest: string[] } | undefined {
  let best: { command: Command; rest: string[]; len: number } | undefined;
  for (const c of commands) {
    for (const p of paths(c)) {
      if (p.length <= argv.length && p.every((w, i) => argv[i] === w) && (!best || p.length > best.len)) {
        best = { command: c, rest: argv.slice(p.length), len: p.length };
      }
    }
  }
  return best && { command: best.command, rest: best.rest };
}

function help(commands: Command[], prefix: string[] = []): string {
  const rows = commands
    .filter((c) => prefix.every((w, i) => c.path[i] === w))
    .map((c) => `  ${c.path.join(' ').padEnd(22)} ${c.summary}`)
    .sort();
  return `Usage: gantry COMMAND\n\nA cluster of Linux hosts as one container engine.\n\nCommands:\n${rows.join('\n')}\n\nRun 'gantry COMMAND --help' for more on a command.\n`;
}

function commandHelp(c: Command): string {
  const flags = c.flags.map((f) => `  ${f.short ? `-${f.short}, ` : '    '}--${f.name.padEnd(24)} ${f.help}`).join('\n');
  return `Usage: ${c.usage}\n\n${c.summary}\n${flags ? `\nOptions:\n${flags}\n` : ''}`;
}

export async function run(argv: string[], ctxOverrides: Partial<CommandContext> = {}): Promise<number> {
  const out = ctxOverrides.out ?? process.stdout;
  const err = ctxOverrides.err ?? process.stderr;
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    out.write(help(await loadCommands(undefined)));
    return argv.length === 0 ? 1 : 0;
  }
  if (argv[0] === 'version' || argv[0] === '--version') {
    out.write('gantry 0.1.0\n');
    return 0;
  }
  const commands = await loadCommands(argv[0]);
  const found = findCommand(argv, commands);
  if (!found) {
    const group = commands.filter((c) => c.path[0] === argv[0]);
    if (group.length > 0) {
      err.write(`gantry: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${help(commands, [argv[0]])}`);
    } else {
      err.write(`gantry: unknown command "${argv[0]}"\nSee 'gantry --help'.\n`);
    }
    return 2;
  }
  const { command, rest } = found;
  if (rest.includes('--help') || rest.includes('-h')) {
    const stopAt = command.stopAtPositional;
    const before = stopAt === undefined ? rest : rest.slice(0, rest.findIndex((a) => !a.startsWith('-')) >>> 0);
    if (before.includes('--help') || before.includes('-h')) {
      out.write(commandHelp(command));
      return 0;
    }
  }
  let args: ParsedArgs;
  try {
    args = parseArgs(rest, command.flags, { stopAtPositional: command.stopAtPositional });
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`gantry ${command.path.join(' ')}: ${e.message}\nSee 'gantry ${command.path.join(' ')} --help'.\n`);
      return 2;
    }
    throw e;
  }
  const { CallError, dial, grpcTarget } = await import('./connection.ts');
  let conn: Connection | undefined;
  const env = ctxOverrides.env ?? process.env;
  const ctx: CommandContext = {
    connect: () => {
      conn ??= dial(grpcTarget(env), env);
      return conn;
    },
    out,
    err,
    isTTY: ctxOverrides.isTTY ?? Boolean((out as NodeJS.WriteStream).isTTY),
    env,
  };
  try {
    return await command.run(args, ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`gantry ${command.path.join(' ')}: ${e.message}\nSee 'gantry ${command.path.join(' ')} --help'.\n`);
      return 2;
    }
    if (e instanceof CallError) {
      err.write(`Error: ${e.message}\n`);
      return 1;
    }
    err.write(`Error: ${(e as Error).message}\n`);
    return 1;
  } finally {
    conn?.close();
  }
}

/** Runs the CLI on this process's argv and exits with its status (cli/dist/gantry.cjs calls it too). */
export function main(): void {
  // Compiled (and type-stripped) code is cached across calls: most of a call's start-up otherwise.
  enableCompileCache();
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`gantry: ${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}

if (import.meta.main) main();
