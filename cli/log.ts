// gantryd's log: one line per event on stderr with time and level; GANTRY_DEBUG=1 adds debug lines.
import type { Log } from '../manager/controller.ts';

export function stderrLog(env: NodeJS.ProcessEnv): Log {
  const debug = env.GANTRY_DEBUG === '1' || env.GANTRY_DEBUG === 'true';
  const line = (level: string, msg: string, args: unknown[]) => {
    const extra = args.length > 0 ? ` ${args.map((a) => (a instanceof Error ? a.message : JSON.stringify(a))).join(' ')}` : '';
    process.stderr.write(`${new Date().toISOString()} ${level} ${msg}${extra}\n`);
  };
  return {
    debug: (m, ...a) => {
      if (debug) line('debug', m, a);
    },
    info: (m, ...a) => line('info', m, a),
    warn: (m, ...a) => line('warn', m, a),
    error: (m, ...a) => line('error', m, a),
  };
}
