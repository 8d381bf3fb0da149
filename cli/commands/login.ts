// `gantry login|logout REGISTRY`: registry credentials in a 0600 file (~/.config/gantry/auth.json, or
// GANTRY_AUTH_FILE), Docker's config.json shape; image commands send the matching entry to gantryd per call.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bool, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import type { RegistryAuth } from '../../proto/gen/gantry/v1/images.ts';
import { parseReference } from '../../worker/image/reference.ts';

interface AuthFile {
  auths: Record<string, { auth?: string; identitytoken?: string }>;
}

export function authFilePath(env: NodeJS.ProcessEnv): string {
  if (env.GANTRY_AUTH_FILE) return env.GANTRY_AUTH_FILE;
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'gantry', 'auth.json');
}

/** Registry key as stored: host[:port]; Docker Hub under "docker.io". */
export function registryKey(input: string): string {
  let s = input.trim().replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (s === 'index.docker.io' || s === 'registry-1.docker.io' || s === '') s = 'docker.io';
  return s;
}

export function readAuthFile(env: NodeJS.ProcessEnv): AuthFile {
  try {
    const j = JSON.parse(fs.readFileSync(authFilePath(env), 'utf8')) as Partial<AuthFile>;
    return { auths: j.auths ?? {} };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { auths: {} };
    throw new Error(`cannot read ${authFilePath(env)}: ${(e as Error).message}`);
  }
}

function writeAuthFile(env: NodeJS.ProcessEnv, f: AuthFile): void {
  const file = authFilePath(env);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(f, null, 2)}\n`, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

/** The credentials to send with a call about `ref` (none when not logged in to its registry). */
export function authFor(env: NodeJS.ProcessEnv, ref: string): RegistryAuth[] {
  const p = parseReference(ref);
  if (!p.ok) return [];
  const key = registryKey(p.ref.domain);
  const entry = readAuthFile(env).auths[key];
  if (!entry) return [];
  let username = '';
  let password = '';
  if (entry.auth) {
    const dec = Buffer.from(entry.auth, 'base64').toString('utf8');
    const i = dec.indexOf(':');
    username = dec.slice(0, i);
    password = dec.slice(i + 1);
  }
  return [{ registry: key, username, password, identityToken: entry.identitytoken ?? '' }];
}

async function readStdin(ctx: CommandContext): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  void ctx;
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

const login: Command = {
  path: ['login'],
  summary: 'Save credentials for a registry (sent to gantryd with pulls and pushes)',
  usage: 'gantry login [OPTIONS] [REGISTRY]',
  flags: [
    { name: 'username', short: 'u', kind: 'string', help: 'user name' },
    { name: 'password', short: 'p', kind: 'string', help: 'password (prefer --password-stdin)' },
    { name: 'password-stdin', kind: 'bool', help: 'read the password from stdin' },
  ],
  async run(args, ctx) {
    if (args.positionals.length > 1) throw new UsageError('login takes at most one REGISTRY');
    const key = registryKey(args.positionals[0] ?? 'docker.io');
    const username = str(args, 'username');
    let password = str(args, 'password');
    if (bool(args, 'password-stdin')) {
      if (password !== undefined) throw new UsageError('--password and --password-stdin are mutually exclusive');
      password = await readStdin(ctx);
    }
    if (!username) throw new UsageError('login needs --username');
    if (password === undefined || password === '') throw new UsageError('login needs --password-stdin (or --password)');
    const f = readAuthFile(ctx.env);
    f.auths[key] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
    writeAuthFile(ctx.env, f);
    ctx.out.write(`Credentials for ${key} saved in ${authFilePath(ctx.env)} (checked by the registry at the next pull or push)\n`);
    return 0;
  },
};

const logout: Command = {
  path: ['logout'],
  summary: 'Forget the credentials for a registry',
  usage: 'gantry logout [REGISTRY]',
  flags: [],
  async run(args, ctx) {
    const key = registryKey(args.positionals[0] ?? 'docker.io');
    const f = readAuthFile(ctx.env);
    if (!f.auths[key]) {
      ctx.err.write(`Not logged in to ${key}\n`);
      return 0;
    }
    delete f.auths[key];
    writeAuthFile(ctx.env, f);
    ctx.out.write(`Removing login credentials for ${key}\n`);
    return 0;
  },
};

export const commands: Command[] = [login, logout];
