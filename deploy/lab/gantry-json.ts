// Reads `gantry ... --format json` output (a JSON array, one object, or JSON lines) into typed rows
// for the lab, the end-to-end tests and the benchmark; tolerant of Docker-style and camelCase keys.

export type Row = Record<string, unknown>;

/** Parses a JSON array, a single object, or one JSON object per line. */
export function parseJsonRows(stdout: string): Row[] {
  const text = stdout.trim();
  if (!text) return [];
  try {
    const v = JSON.parse(text) as unknown;
    if (Array.isArray(v)) return v as Row[];
    if (v && typeof v === 'object') return [v as Row];
  } catch {
    // JSON lines
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Row);
}

/** The first present field among `keys` (Docker's `Node`, then `node`, ...), as a string ('' when absent). */
export function field(row: Row, ...keys: string[]): string {
  for (const k of keys) {
    const v = lookup(row, k);
    if (v !== undefined && v !== null && v !== '') return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  return '';
}

function lookup(row: Row, key: string): unknown {
  let cur: unknown = row;
  for (const part of key.split('.')) {
    if (!cur || typeof cur !== 'object') return undefined;
    const obj = cur as Row;
    const hit = Object.keys(obj).find((k) => k === part) ?? Object.keys(obj).find((k) => k.toLowerCase() === part.toLowerCase());
    cur = hit === undefined ? undefined : obj[hit];
  }
  return cur;
}

export interface NodeRow {
  id: string;
  hostname: string;
  status: string; // ready | down | unknown | disconnected
  availability: string; // active | pause | drain
  manager: string; // leader | reachable | ''
  raw: Row;
}

export function nodeRows(stdout: string): NodeRow[] {
  return parseJsonRows(stdout).map((r) => ({
    id: field(r, 'ID', 'id'),
    hostname: field(r, 'Hostname', 'hostname', 'Description.Hostname', 'description.hostname', 'name'),
    status: word(field(r, 'Status', 'status', 'Status.State', 'status.state', 'state')),
    availability: word(field(r, 'Availability', 'availability', 'Spec.Availability', 'spec.availability')),
    manager: word(field(r, 'ManagerStatus', 'managerStatus')),
    raw: r,
  }));
}

export interface TaskRow {
  id: string;
  name: string; // web.3 or web.<nodeid>
  slot: string; // "3" for replicated, '' for global
  node: string;
  desired: string; // running | shutdown | ...
  state: string; // running | pending | failed | ...
  current: string; // the whole CURRENT STATE cell, e.g. "Running 5 seconds ago"
  error: string;
  raw: Row;
}

export function taskRows(stdout: string): TaskRow[] {
  return parseJsonRows(stdout).map((r) => {
    const name = field(r, 'Name', 'name').replace(/^\\_\s*/, '').trim();
    const current = field(r, 'CurrentState', 'currentState', 'State', 'state', 'Status.State', 'status.state');
    const slot = field(r, 'Slot', 'slot') || (/\.(\d+)$/.exec(name)?.[1] ?? '');
    return {
      id: field(r, 'ID', 'id'),
      name,
      slot,
      node: field(r, 'Node', 'node', 'NodeHostname', 'nodeHostname', 'NodeID', 'nodeId'),
      desired: word(field(r, 'DesiredState', 'desiredState', 'desired')),
      state: word(current),
      current,
      error: field(r, 'Error', 'error', 'Status.Err', 'status.err', 'Message', 'message'),
      raw: r,
    };
  });
}

export interface ServiceRow {
  id: string;
  name: string;
  mode: string;
  replicas: string; // "3/6"
  running: number;
  desired: number;
  raw: Row;
}

export function serviceRows(stdout: string): ServiceRow[] {
  return parseJsonRows(stdout).map((r) => {
    const replicas = field(r, 'Replicas', 'replicas');
    const m = /^(\d+)\/(\d+)/.exec(replicas);
    return {
      id: field(r, 'ID', 'id'),
      name: field(r, 'Name', 'name'),
      mode: word(field(r, 'Mode', 'mode')),
      replicas,
      running: m ? Number(m[1]) : Number.NaN,
      desired: m ? Number(m[2]) : Number.NaN,
      raw: r,
    };
  });
}

/** "Running 5 seconds ago" → "running"; "TASK_STATE_RUNNING" → "running". */
function word(s: string): string {
  const w = /^[A-Za-z_]+/.exec(s.trim())?.[0] ?? '';
  return w
    .toLowerCase()
    .replace(/^(task_state_|node_status_state_|node_availability_|node_state_)/, '');
}
