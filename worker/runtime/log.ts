// The worker's narrow logger interface (what runtimes and task runners log through) and two
// implementations: silent, and GANTRY_TRACE-switched stderr lines per module.

export interface Log {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const nullLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

/** Writes to stderr; debug lines only when GANTRY_TRACE names the module (or is "*"). */
export function stderrLog(module: string): Log {
  const trace = (process.env.GANTRY_TRACE ?? '').split(',');
  const on = trace.includes(module) || trace.includes('*');
  const line = (lvl: string, msg: string, f?: Record<string, unknown>) =>
    process.stderr.write(`${new Date().toISOString()} ${lvl} ${module}: ${msg}${f ? ` ${JSON.stringify(f)}` : ''}\n`);
  return {
    debug: (m, f) => on && line('debug', m, f),
    info: (m, f) => line('info', m, f),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}
