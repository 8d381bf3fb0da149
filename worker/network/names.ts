// Names and addresses the worker's network code derives: interface names, netns names, MACs.
// Everything that reaches a command line passes one of these validators first.
import { createHash } from 'node:crypto';

export const HOST_BRIDGE = 'gantry0';
export const CHAIN_PREFIX = 'GANTRY-';
export const VXLAN_PORT = 4789;
export const OVERLAY_MTU = 1450;

const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;
const NSNAME = /^[a-z0-9-]{1,100}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function checkIfName(s: string): string {
  if (!IFNAME.test(s)) throw new Error(`invalid interface name "${s}"`);
  return s;
}

export function checkNsName(s: string): string {
  if (!NSNAME.test(s)) throw new Error(`invalid netns name "${s}"`);
  return s;
}

export function checkIp(s: string): string {
  const m = IPV4.exec(s);
  if (!m || m.slice(1).some((p) => Number(p) > 255)) throw new Error(`invalid IPv4 address "${s}"`);
  return s;
}

export function checkCidr(s: string): string {
  const [ip, p, ...rest] = s.split('/');
  if (rest.length || !p || !/^\d{1,2}$/.test(p) || Number(p) > 32) throw new Error(`invalid CIDR "${s}"`);
  checkIp(ip);
  return s;
}

export function checkPort(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`invalid port ${n}`);
  return n;
}

export function checkProto(p: string): string {
  const v = p || 'tcp';
  if (v !== 'tcp' && v !== 'udp') throw new Error(`invalid protocol "${p}"`);
  return v;
}

function short(s: string, n: number): string {
  return createHash('sha256').update(s).digest('hex').slice(0, n);
}

/** The netns of a task on this node: gantry-<node8>-<task id>. */
export function netnsName(nodeId: string, taskId: string): string {
  return checkNsName(`gantry-${nodeId.slice(0, 8).toLowerCase()}-${taskId.toLowerCase()}`);
}

export function netnsPrefix(nodeId: string): string {
  return `gantry-${nodeId.slice(0, 8).toLowerCase()}-`;
}

/** Host end of a task's veth number `i` (0 = the host bridge, 1.. = overlays). */
export function vethName(taskId: string, i: number): string {
  return checkIfName(`gv${short(taskId, 9)}${i}`);
}

export function overlayBridge(vni: number): string {
  return checkIfName(`gbr${vni}`);
}

export function vxlanName(vni: number): string {
  return checkIfName(`gvx${vni}`);
}

/** 02:42:<ip bytes>, as Docker does: a container's (or node's) MAC follows its overlay address. */
export function macOf(ip: string): string {
  return `02:42:${checkIp(ip).split('.').map((p) => Number(p).toString(16).padStart(2, '0')).join(':')}`;
}

/** Per-service chain name: GANTRY-S-<hash> (28 characters at most). */
export function serviceChain(kind: 'S' | 'V', key: string): string {
  return `${CHAIN_PREFIX}${kind}-${short(key, 12).toUpperCase()}`;
}
