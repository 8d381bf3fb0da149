// Reads `gantry ... --format json` output (a JSON array, one object, or JSON lines) into typed rows
// for the lab, the end-to-end tests and the benchmark; tolerant of Docker-style and camelCase keys.

import { NodeAvailability, NodeState, TaskState } from '../../proto/gen/gantry/v1/objects.ts';

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
  return parseJsonRows(stdout).map((r) => {
    const leader = lookup(r, 'managerStatus.leader');
    return {
      id: field(r, 'ID', 'id'),
      hostname: field(r, 'description.hostname', 'Hostname', 'name'),
      status: enumWord(field(r, 'status.state', 'Status', 'state'), NodeState, 'NODE_STATE_'),
      availability: enumWord(field(r, 'spec.availability', 'Availability'), NodeAvailability, 'NODE_AVAILABILITY_'),
      manager: typeof leader === 'boolean' ? (leader ? 'leader' : 'reachable') : word(field(r, 'ManagerStatus')),
      raw: r,
    };
  });
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
  /** What the system says it is doing ("no suitable node (...)"), when the output has it. */
  message: string;
  raw: Row;
}

export function taskRows(stdout: string): TaskRow[] {
  return parseJsonRows(stdout).map((r) => {
    const slotNum = field(r, 'slot');
    const slot = slotNum && slotNum !== '0' ? slotNum : (/\.(\d+)$/.exec(field(r, 'Name'))?.[1] ?? '');
    const service = field(r, 'serviceName');
    const name = field(r, 'Name').replace(/^\\_\s*/, '').trim() || `${service}.${slot || field(r, 'nodeId')}`;
    const cell = field(r, 'status.state', 'CurrentState', 'State');
    const state = enumWord(cell, TaskState, 'TASK_STATE_');
    const current = /^-?\d+$/.test(cell) ? state : cell;
    return {
      id: field(r, 'ID', 'id'),
      name,
      slot,
      node: field(r, 'nodeHostname', 'Node', 'nodeId'),
      desired: enumWord(field(r, 'desiredState', 'DesiredState'), TaskState, 'TASK_STATE_'),
      state,
      current,
      error: field(r, 'status.err', 'Error'),
      message: field(r, 'status.message', 'Message'),
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

/** A proto enum number (or name) as the lower-case word after its prefix: 512 → "running". */
function enumWord(v: string, e: Record<string, number>, prefix: string): string {
  if (/^-?\d+$/.test(v)) {
    const k = Object.keys(e).find((x) => e[x] === Number(v));
    return k ? k.slice(prefix.length).toLowerCase() : v;
  }
  return word(v);
}

/** "Running 5 seconds ago" → "running"; "TASK_STATE_RUNNING" → "running". */
function word(s: string): string {
  const w = /^[A-Za-z_]+/.exec(s.trim())?.[0] ?? '';
  return w
    .toLowerCase()
    .replace(/^(task_state_|node_status_state_|node_availability_|node_state_)/, '');
}
