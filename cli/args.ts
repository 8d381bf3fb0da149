// Docker-style flag parsing for the gantry CLI: `--flag value`, `--flag=value`, `-f`, repeated
// flags collected into lists, and a stop at the first positional when the command takes a CMD.

export type FlagKind = 'bool' | 'string' | 'list';

export interface FlagDef {
  name: string;          // long name without dashes, e.g. "replicas"
  short?: string;        // one letter without dash, e.g. "d"
  kind: FlagKind;
  help: string;
}

export interface ParsedArgs {
  flags: Map<string, string | boolean | string[]>;
  positionals: string[];
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * Parses argv against the flag definitions. With `stopAtPositional`, everything after the first
 * positional argument is kept verbatim (so `service create IMG sh -c "x --y"` keeps the CMD's flags).
 */
export function parseArgs(argv: string[], defs: FlagDef[], opts: { stopAtPositional?: number } = {}): ParsedArgs {
  const byLong = new Map(defs.map((d) => [d.name, d]));
  const byShort = new Map(defs.filter((d) => d.short).map((d) => [d.short as string, d]));
  const flags = new Map<string, string | boolean | string[]>();
  const positionals: string[] = [];
  let i = 0;
  const take = (def: FlagDef, inline: string | undefined): void => {
    if (def.kind === 'bool') {
      if (inline === undefined) flags.set(def.name, true);
      else if (inline === 'true' || inline === 'false') flags.set(def.name, inline === 'true');
      else throw new UsageError(`flag --${def.name} takes true or false, not "${inline}"`);
      return;
    }
    let value = inline;
    if (value === undefined) {
      i += 1;
      if (i >= argv.length) throw new UsageError(`flag --${def.name} needs a value`);
      value = argv[i];
    }
    if (def.kind === 'list') flags.set(def.name, [...((flags.get(def.name) as string[] | undefined) ?? []), value]);
    else flags.set(def.name, value);
  };
  for (; i < argv.length; i++) {
    const arg = argv[i];
    const stop = opts.stopAtPositional !== undefined && positionals.length >= opts.stopAtPositional;
    if (stop || arg === '-' || !arg.startsWith('-')) {
      positionals.push(arg);
      if (opts.stopAtPositional !== undefined && positionals.length >= opts.stopAtPositional) {
        positionals.push(...argv.slice(i + 1));
        break;
      }
      continue;
    }
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      const def = byLong.get(name);
      if (!def) throw new UsageError(`unknown flag: --${name}`);
      take(def, eq >= 0 ? arg.slice(eq + 1) : undefined);
      continue;
    }
    // short flags, possibly grouped (-fq) or with an attached value (-n3)
    for (let j = 1; j < arg.length; j++) {
      const def = byShort.get(arg[j]);
      if (!def) throw new UsageError(`unknown shorthand flag: '${arg[j]}' in ${arg}`);
      if (def.kind === 'bool') {
        flags.set(def.name, true);
        continue;
      }
      take(def, j + 1 < arg.length ? arg.slice(j + 1) : undefined);
      break;
    }
  }
  return { flags, positionals };
}

export function str(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function bool(p: ParsedArgs, name: string): boolean {
  return p.flags.get(name) === true;
}

export function list(p: ParsedArgs, name: string): string[] {
  const v = p.flags.get(name);
  return Array.isArray(v) ? v : [];
}
