// What a CLI command is: a name path ("service create"), its flags, and a run function.
// cli/gantry.ts collects every command from cli/commands/*.ts and dispatches argv to it.
import type { FlagDef, ParsedArgs } from './args.ts';
import type { Connection } from './connection.ts';

export interface CommandContext {
  /** Lazily dials gantryd (GANTRY_HOST or /run/gantry/gantry.sock); one connection per process. */
  connect(): Connection;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  /** true when stdout is a terminal: progress bars and colours only then. */
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  /** Words that select it, e.g. ["service", "create"]. Aliases: extra entries in `aliases`. */
  path: string[];
  aliases?: string[][];
  summary: string;
  usage: string;            // e.g. "gantry service create [OPTIONS] IMAGE [COMMAND] [ARG...]"
  flags: FlagDef[];
  /** Positional count after which the rest is taken verbatim (IMAGE CMD ARGS...). */
  stopAtPositional?: number;
  /** Returns the process exit code. Throw UsageError for bad usage, anything else for failures. */
  run(args: ParsedArgs, ctx: CommandContext): Promise<number>;
}
