// Parsing and printing of the units users type on the command line: sizes ("512MiB", "12MB" — binary,
// as Docker's --limit-memory), CPU counts ("1.5" → nano-CPUs) and Go-style durations ("10s", "1m30s").

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/**
 * A memory size in bytes. Like Docker's RAMInBytes, k/m/g/t/p are binary whether written
 * "m", "mb" or "mib" (so "12MB" = 12 MiB); a bare number is bytes.
 */
export function parseBytes(text: string): Parsed<number> {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$/i.exec(text);
  if (!m || (m[3] && !m[2]) || (m[3] && !m[4])) {
    return { ok: false, error: `"${text}" is not a size: write a number with an optional unit (b, k, m, g, t; e.g. 512MiB, 1.5g)` };
  }
  const value = Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()];
  if (!Number.isSafeInteger(Math.floor(value))) return { ok: false, error: `size "${text}" is too large` };
  return { ok: true, value: Math.floor(value) };
}

/** CPUs as a decimal ("0.5", "2") in nano-CPUs (1 CPU = 1e9). */
export function parseCpus(text: string): Parsed<number> {
  const m = /^\s*(\d+)(?:\.(\d{1,9}))?\s*$/.exec(text);
  if (!m) return { ok: false, error: `"${text}" is not a CPU count: write a decimal number such as 0.5 or 2` };
  const nano = Number(m[1]) * 1e9 + Number((m[2] ?? '').padEnd(9, '0') || '0');
  if (!Number.isSafeInteger(nano)) return { ok: false, error: `CPU count "${text}" is too large` };
  return { ok: true, value: nano };
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A Go-style duration ("300ms", "10s", "1m30s", "1.5h", "0") in whole milliseconds (rounded). */
export function parseDuration(text: string): Parsed<number> {
  const s = text.trim();
  if (s === '0') return { ok: true, value: 0 };
  const bad: Parsed<number> = {
    ok: false,
    error: `"${text}" is not a duration: write a number with a unit (ns, us, ms, s, m, h), e.g. 10s or 1m30s`,
  };
  if (s === '') return bad;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    at = re.lastIndex;
  }
  if (at !== s.length) return bad;
  return { ok: true, value: Math.round(total) };
}

/** A non-negative integer ("3"); `what` names the flag in the error. */
export function parseCount(text: string, what: string): Parsed<number> {
  if (!/^\s*\d+\s*$/.test(text)) return { ok: false, error: `${what} must be a whole number ≥ 0, not "${text}"` };
  const n = Number(text);
  if (!Number.isSafeInteger(n)) return { ok: false, error: `${what} "${text}" is too large` };
  return { ok: true, value: n };
}

/** Bytes as Docker prints them: "512MiB", "1.5GiB", "100B". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 3 : 2).replace(/\.?0+$/, '');
  return `${text}${units[i]}`;
}

/** Nano-CPUs as a decimal CPU count: 500000000 → "0.5". */
export function formatCpus(nano: number): string {
  return String(nano / 1e9);
}

/** Milliseconds as a Go duration: 90000 → "1m30s", 300 → "300ms", 0 → "0s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  let out = '';
  if (h) out += `${h}h`;
  if (h || m) out += `${m}m`;
  out += `${s}s`;
  return out;
}

/** Docker's HumanDuration: "Less than a second", "5 seconds", "About a minute", "3 hours", "2 weeks". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}
