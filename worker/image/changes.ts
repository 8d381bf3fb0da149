// `docker import -c` / `--change` instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME,
// STOPSIGNAL) applied to an image config: a pure function from (config, lines) to a new config or an error.
import type { OciImageConfig } from './oci.ts';

export type ChangesResult = { ok: true; config: OciImageConfig } | { ok: false; reason: string };

function argv(rest: string): string[] {
  const t = rest.trim();
  if (t.startsWith('[')) {
    try {
      const v = JSON.parse(t) as unknown;
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
    } catch {}
  }
  return ['/bin/sh', '-c', t];
}

/** Splits `K=V K2="v 2"` (or the legacy `K V`) into pairs. */
function pairs(rest: string, instr: string): Array<[string, string]> | string {
  const t = rest.trim();
  if (!t.includes('=')) {
    const sp = t.search(/\s/);
    if (sp < 0) return `${instr} needs KEY=VALUE`;
    return [[t.slice(0, sp), t.slice(sp).trim()]];
  }
  const out: Array<[string, string]> = [];
  const re = /([^\s=]+)=("((?:[^"\\]|\\.)*)"|'([^']*)'|(\S*))/g;
  let m: RegExpExecArray | null = re.exec(t);
  while (m) {
    const v = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[4] !== undefined ? m[4] : m[5];
    out.push([m[1], v]);
    m = re.exec(t);
  }
  if (out.length === 0) return `${instr} needs KEY=VALUE`;
  return out;
}

export function applyChanges(base: OciImageConfig, lines: string[]): ChangesResult {
  const c: OciImageConfig = structuredClone(base);
  for (const line of lines) {
    const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(line);
    if (!m) return { ok: false, reason: `change ${JSON.stringify(line)}: expected INSTRUCTION ARGS` };
    const instr = m[1].toUpperCase();
    const rest = m[2];
    switch (instr) {
      case 'CMD':
        c.Cmd = argv(rest);
        break;
      case 'ENTRYPOINT':
        c.Entrypoint = argv(rest);
        break;
      case 'ENV': {
        const p = pairs(rest, 'ENV');
        if (typeof p === 'string') return { ok: false, reason: p };
        const env = c.Env ?? [];
        for (const [k, v] of p) {
          const i = env.findIndex((e) => e.startsWith(`${k}=`));
          if (i >= 0) env[i] = `${k}=${v}`;
          else env.push(`${k}=${v}`);
        }
        c.Env = env;
        break;
      }
      case 'LABEL': {
        const p = pairs(rest, 'LABEL');
        if (typeof p === 'string') return { ok: false, reason: p };
        c.Labels = { ...(c.Labels ?? {}), ...Object.fromEntries(p) };
        break;
      }
      case 'WORKDIR':
        c.WorkingDir = rest.trim();
        break;
      case 'USER':
        c.User = rest.trim();
        break;
      case 'STOPSIGNAL':
        c.StopSignal = rest.trim();
        break;
      case 'EXPOSE': {
        c.ExposedPorts = c.ExposedPorts ?? {};
        for (const p of rest.trim().split(/\s+/)) {
          if (!/^[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/.test(p)) return { ok: false, reason: `EXPOSE ${p}: want PORT[/PROTO]` };
          c.ExposedPorts[p.includes('/') ? p : `${p}/tcp`] = {};
        }
        break;
      }
      case 'VOLUME': {
        c.Volumes = c.Volumes ?? {};
        const vs = rest.trim().startsWith('[') ? (JSON.parse(rest) as string[]) : rest.trim().split(/\s+/);
        for (const v of vs) c.Volumes[v] = {};
        break;
      }
      default:
        return { ok: false, reason: `change ${JSON.stringify(line)}: ${instr} is not supported by import (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)` };
    }
  }
  return { ok: true, config: c };
}
