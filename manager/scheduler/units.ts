// How the scheduler prints amounts in its explanations: bytes in binary units ("512MiB", "1.5GiB")
// and nano-CPUs as CPUs ("0.5 CPUs", "1 CPU"), and "1 node" / "2 nodes".

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

function trim(n: number, digits: number): string {
  return String(Number(n.toFixed(digits)));
}

export function formatBytes(b: number): string {
  for (const [unit, size] of [
    ['TiB', TiB],
    ['GiB', GiB],
    ['MiB', MiB],
    ['KiB', KiB],
  ] as const) {
    if (b >= size) return `${trim(b / size, 1)}${unit}`;
  }
  return `${b}B`;
}

export function formatCpus(nano: number): string {
  const n = nano / 1e9;
  return `${trim(n, 2)} ${n === 1 ? 'CPU' : 'CPUs'}`;
}

/** "1 node is", "2 nodes are" — `verb` as [singular, plural]. */
export function nodes(count: number, verb?: readonly [string, string]): string {
  const noun = count === 1 ? 'node' : 'nodes';
  return verb ? `${count} ${noun} ${count === 1 ? verb[0] : verb[1]}` : `${count} ${noun}`;
}
