// Image references parsed the way Docker parses them (distribution/reference): domain, path, tag, digest,
// with docker.io and library/ defaults; a malformed reference is a value carrying the reason.

export interface Reference {
  /** Registry host[:port] as written, "docker.io" by default. */
  domain: string;
  /** Repository path inside the registry, e.g. "library/busybox". */
  path: string;
  tag?: string;
  digest?: string;
}

export type ParseResult = { ok: true; ref: Reference } | { ok: false; reason: string };

const alnum = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alnum}(?:${separator}${alnum})*`;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainRe = new RegExp(`^(?:${domainComponent}(?:\\.${domainComponent})*|${ipv6})(?::[0-9]+)?$`);
const pathComponentRe = new RegExp(`^${pathComponent}$`);
const tagRe = /^[\w][\w.-]{0,127}$/;
const digestRe = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const hex64Re = /^[a-f0-9]{64}$/;

export const DOCKER_HUB = 'docker.io';
const NAME_TOTAL_MAX = 255;

/** Parses "busybox", "library/busybox:1.36", "host:5000/team/app@sha256:…" like `docker pull` does. */
export function parseReference(input: string): ParseResult {
  const s = input.trim();
  const bad = (reason: string): ParseResult => ({ ok: false, reason: `invalid reference "${input}": ${reason}` });
  if (s === '') return bad('empty');
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestRe.test(digest)) return bad(`digest "${digest}" is not ALGORITHM:HEX`);
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      return bad(`sha256 digest must be 64 lowercase hex characters`);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagRe.test(tag)) return bad(`tag "${tag}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  if (rest === '') return bad('repository name is empty');
  if (hex64Re.test(rest) && !tag && !digest) {
    return bad('cannot specify 64-byte hexadecimal strings as a repository name');
  }
  let domain = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (!domainRe.test(domain)) return bad(`registry host "${domain}" is not a valid host[:port]`);
  if (path === '') return bad('repository name is empty');
  if (path !== path.toLowerCase()) return bad('repository name must be lowercase');
  for (const comp of path.split('/')) {
    if (!pathComponentRe.test(comp)) {
      return bad(`path component "${comp}" must be lowercase letters, digits and single separators (. _ __ -)`);
    }
  }
  if (domain === 'index.docker.io') domain = DOCKER_HUB;
  if (domain === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (`${domain}/${path}`.length > NAME_TOTAL_MAX) return bad(`repository name longer than ${NAME_TOTAL_MAX} characters`);
  if (!tag && !digest) tag = 'latest';
  return { ok: true, ref: { domain, path, tag, digest } };
}

export class InvalidReferenceError extends Error {
  override name = 'InvalidReferenceError';
}

/** parseReference that throws a InvalidReferenceError with the reason. */
export function mustParse(input: string): Reference {
  const r = parseReference(input);
  if (!r.ok) throw new InvalidReferenceError(r.reason);
  return r.ref;
}

/** "docker.io/library/busybox" */
export function repoName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** Fully qualified: "docker.io/library/busybox:latest" or "…@sha256:…" (tag kept when both are given). */
export function formatReference(ref: Reference): string {
  let s = repoName(ref);
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** As Docker shows it: "busybox:latest", "team/app:1", "127.0.0.1:5000/x:1". */
export function familiarName(ref: Reference): string {
  let name = repoName(ref);
  if (ref.domain === DOCKER_HUB) {
    name = ref.path.startsWith('library/') ? ref.path.slice('library/'.length) : ref.path;
  }
  return name;
}

export function familiarString(ref: Reference): string {
  let s = familiarName(ref);
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** The host to dial for a reference's domain: Docker Hub's API lives at registry-1.docker.io. */
export function registryHost(domain: string): string {
  return domain === DOCKER_HUB ? 'registry-1.docker.io' : domain;
}

/** Docker's default: loopback registries speak plain HTTP; everything else HTTPS unless marked insecure. */
export function defaultsToPlainHttp(domain: string): boolean {
  const host = domain.replace(/:[0-9]+$/, '');
  return host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || /^127\./.test(host);
}
