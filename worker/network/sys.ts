// The one place worker/network runs commands (ip, bridge, iptables, nsenter): argv arrays, never a
// shell, with stdin for batches. Errors name the command and what it said.
import { spawn } from 'node:child_process';

export interface Sys {
  /** Runs `bin args`; resolves stdout; rejects with stderr unless `allowFail`. */
  run(bin: string, args: string[], opts?: { input?: string; allowFail?: boolean }): Promise<{ ok: boolean; out: string; err: string }>;
}

export class CommandError extends Error {
  override name = 'CommandError';
}

export const realSys: Sys = {
  run(bin, args, opts = {}) {
    return new Promise((resolve, reject) => {
      const p = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => {
        out += d;
      });
      p.stderr.on('data', (d) => {
        err += d;
      });
      p.on('error', (e) => reject(new CommandError(`${bin} ${args.join(' ')}: ${e.message}`)));
      p.on('close', (code) => {
        const ok = code === 0;
        if (!ok && !opts.allowFail) reject(new CommandError(`${bin} ${args.join(' ')}: exit ${code}: ${err.trim() || out.trim()}`));
        else resolve({ ok, out, err });
      });
      p.stdin.on('error', () => {});
      p.stdin.end(opts.input ?? '');
    });
  },
};
