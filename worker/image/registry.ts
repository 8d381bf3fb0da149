// The OCI distribution API client (the only code here that talks HTTP to registries): /v2/ check, anonymous,
// Basic and Bearer token auth, manifests, blobs with redirects, range resume and retries, uploads and mounts.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { Readable } from 'node:stream';
import { defaultsToPlainHttp, registryHost } from './reference.ts';
import { basicAuth, type Challenge, parseChallenges, repoScope, tokenUrl } from './registry-auth.ts';

export interface RegistryCredentials {
  username?: string;
  password?: string;
  identityToken?: string;
}

export interface RegistryClientOptions {
  /** Plain HTTP (or HTTPS without verification when the registry speaks TLS), like --insecure-registry. */
  insecure?: boolean;
  credentials?: RegistryCredentials;
  signal?: AbortSignal;
  /** Attempts for a request that fails with 5xx/429 or a broken connection (default 5). */
  attempts?: number;
  /** First backoff delay in ms, doubled per attempt (default 200). */
  backoffMs?: number;
  /** A connection that sends nothing for this long is dropped and retried (default 60s). */
  idleTimeoutMs?: number;
  /** Called when a request is retried, with the reason. */
  onRetry?(reason: string, attempt: number): void;
  /** Injected for tests. */
  sleep?(ms: number): Promise<void>;
  /**
   * Per-registry CA certificates, like Docker's /etc/docker/certs.d: `<certsDir>/<host[:port]>/*.crt` are trusted
   * for that registry in addition to the system store (default /etc/gantry/certs.d).
   */
  certsDir?: string;
  /** Use HTTPS even for a loopback registry (which otherwise speaks plain HTTP). */
  forceTls?: boolean;
}

export class RegistryError extends Error {
  override name = 'RegistryError';
  readonly status: number;
  readonly retryable: boolean;
  constructor(message: string, status: number, retryable: boolean, cause?: unknown) {
    super(message, { cause });
    this.status = status;
    this.retryable = retryable;
  }
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
  url: URL;
}

/** The host's CA store (not only Node's bundled one), as Docker uses the system roots. */
function systemCAs(): string[] {
  const t = tls as unknown as { getCACertificates?: (kind: string) => string[] };
  if (!t.getCACertificates) return [...tls.rootCertificates];
  return [...new Set([...t.getCACertificates('system'), ...t.getCACertificates('bundled'), ...t.getCACertificates('extra')])];
}

const agents = {
  http: new http.Agent({ keepAlive: true, maxSockets: 32 }),
  httpsInsecure: new https.Agent({ keepAlive: true, maxSockets: 32, rejectUnauthorized: false }),
};
const httpsAgents = new Map<string, https.Agent>();

/** An HTTPS agent trusting the system store plus the registry's own certs.d CAs. */
function httpsAgentFor(host: string, certsDir: string): https.Agent {
  const dir = path.join(certsDir, host);
  let extra: string[] = [];
  try {
    extra = fs.readdirSync(dir).filter((n) => n.endsWith('.crt')).map((n) => fs.readFileSync(path.join(dir, n), 'utf8'));
  } catch {}
  const key = `${host}|${extra.length}`;
  let a = httpsAgents.get(key);
  if (!a) {
    a = new https.Agent({ keepAlive: true, maxSockets: 32, ca: [...systemCAs(), ...extra] });
    httpsAgents.set(key, a);
  }
  return a;
}

const MAX_MANIFEST = 4 << 20;
const NET_RETRYABLE = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);

export function isRetryable(e: unknown): boolean {
  if (e instanceof RegistryError) return e.retryable;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code && NET_RETRYABLE.has(code)) return true;
  const msg = (e as Error)?.message ?? '';
  return /socket hang up|aborted|idle for|closed early/.test(msg);
}

interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A buffer, or a factory so that a retried request gets a fresh stream. */
  body?: Buffer | (() => Readable);
  /** Scopes needed (for Bearer tokens). */
  scopes: string[];
  /** Follow 3xx redirects (blob downloads); uploads handle Location themselves. */
  follow?: boolean;
}

export class RegistryClient {
  readonly domain: string;
  readonly host: string;
  private opts: RegistryClientOptions;
  private scheme: 'http' | 'https';
  private tokens = new Map<string, string>();
  private challenge: Challenge | undefined;
  private pinged = false;

  constructor(domain: string, opts: RegistryClientOptions = {}) {
    this.domain = domain;
    this.host = registryHost(domain);
    this.opts = opts;
    // like Docker: loopback registries speak HTTP; an insecure registry is tried over HTTPS without
    // verification first and over plain HTTP when it does not speak TLS
    this.scheme = defaultsToPlainHttp(domain) && !opts.forceTls ? 'http' : 'https';
  }

  get baseUrl(): string {
    return `${this.scheme}://${this.host}`;
  }

  private sleep(ms: number): Promise<void> {
    return this.opts.sleep ? this.opts.sleep(ms) : new Promise((r) => setTimeout(r, ms));
  }

  /** Waits before retry number `attempt` (1-based) of a caller's own retry loop. */
  backoff(attempt: number): Promise<void> {
    return this.sleep((this.opts.backoffMs ?? 200) * 2 ** (attempt - 1));
  }

  /** GET /v2/: is this a registry, and which auth does it want? */
  async ping(): Promise<void> {
    if (this.pinged) return;
    let res: Response;
    try {
      res = await this.withRetries('GET /v2/', () => this.raw(new URL('/v2/', this.baseUrl), { scopes: [] }));
    } catch (e) {
      if (this.scheme === 'https' && this.opts.insecure && isTlsMismatch(e)) {
        this.scheme = 'http';
        this.pinged = false;
        return this.ping();
      }
      const hint = isCertError(e) ? ` (trust its CA in /etc/gantry/certs.d/${this.host}/ca.crt or mark it --insecure-registry)` : '';
      throw new RegistryError(`registry ${this.domain} unreachable at ${this.baseUrl}: ${(e as Error).message}${hint}`, 0, false, e);
    }
    res.body.resume();
    if (res.status === 401) {
      this.challenge = parseChallenges(header(res.headers, 'www-authenticate'))[0];
    } else if (res.status !== 200) {
      throw new RegistryError(`${this.baseUrl}/v2/ answered ${res.status}: not an OCI registry?`, res.status, false);
    }
    this.pinged = true;
  }

  /** One HTTP exchange (no auth, no retry). */
  private raw(url: URL, o: RequestOptions, auth?: string): Promise<Response> {
    const lib = url.protocol === 'https:' ? https : http;
    const agent = url.protocol === 'https:'
      ? this.opts.insecure ? agents.httpsInsecure : httpsAgentFor(url.host, this.opts.certsDir ?? '/etc/gantry/certs.d')
      : agents.http;
    const headers: Record<string, string> = { 'user-agent': 'gantry/0.1', ...(o.headers ?? {}) };
    if (auth) headers.authorization = auth;
    if (Buffer.isBuffer(o.body)) headers['content-length'] = String(o.body.length);
    const body = typeof o.body === 'function' ? o.body() : o.body;
    return new Promise((resolve, reject) => {
      const req = lib.request(url, { method: o.method ?? 'GET', headers, agent, signal: this.opts.signal }, (res) => {
        res.setTimeout(this.opts.idleTimeoutMs ?? 60_000, () => res.destroy(Object.assign(new Error(`connection to ${url.host} idle for ${this.opts.idleTimeoutMs ?? 60_000} ms`), { code: 'ETIMEDOUT' })));
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url });
      });
      req.setTimeout(this.opts.idleTimeoutMs ?? 60_000, () => req.destroy(Object.assign(new Error(`connection to ${url.host} idle for ${this.opts.idleTimeoutMs ?? 60_000} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        body.on('error', (e) => req.destroy(e));
        body.pipe(req);
      }
    });
  }

  private async authFor(scopes: string[], url: URL): Promise<string | undefined> {
    if (url.host !== this.host) return undefined; // never send credentials to a redirect target
    const ch = this.challenge;
    if (!ch) return undefined;
    const c = this.opts.credentials;
    if (ch.scheme === 'basic') return c?.username !== undefined ? basicAuth(c.username, c.password ?? '') : undefined;
    if (ch.scheme !== 'bearer') return undefined;
    const key = scopes.join(' ');
    let token = this.tokens.get(key);
    if (!token) {
      token = await this.fetchToken(ch, scopes);
      this.tokens.set(key, token);
    }
    return `Bearer ${token}`;
  }

  private async fetchToken(ch: Challenge, scopes: string[]): Promise<string> {
    const c = this.opts.credentials;
    const url = new URL(tokenUrl(ch, scopes));
    const auth = c?.username !== undefined ? basicAuth(c.username, c.password ?? c.identityToken ?? '') : undefined;
    const res = await this.withRetries(`token from ${url.host}`, () => this.raw(url, { scopes: [] }, auth));
    const body = await readAll(res.body, 1 << 20);
    if (res.status === 401 || res.status === 403) {
      throw new RegistryError(
        `registry ${this.domain}: token server ${url.host} refused ${c?.username ? `user "${c.username}"` : 'anonymous access'} for ${scopes.join(' ')} (${res.status})${c?.username ? '' : '; run gantry login ' + this.domain}`,
        res.status, false,
      );
    }
    if (res.status !== 200) throw new RegistryError(`token server ${url.host} answered ${res.status}: ${body.toString('utf8').slice(0, 200)}`, res.status, res.status >= 500);
    let j: { token?: string; access_token?: string };
    try {
      j = JSON.parse(body.toString('utf8'));
    } catch {
      throw new RegistryError(`token server ${url.host} sent invalid JSON`, res.status, false);
    }
    const t = j.token ?? j.access_token;
    if (!t) throw new RegistryError(`token server ${url.host} sent no token`, res.status, false);
    return t;
  }

  private async withRetries<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const attempts = this.opts.attempts ?? 5;
    for (let i = 1; ; i++) {
      try {
        return await fn();
      } catch (e) {
        if (this.opts.signal?.aborted) throw e;
        if (i >= attempts || !isRetryable(e)) throw e;
        this.opts.onRetry?.(`${what}: ${(e as Error).message}`, i);
        await this.sleep((this.opts.backoffMs ?? 200) * 2 ** (i - 1));
      }
    }
  }

  /**
   * An authenticated request with retries (5xx, 429, broken connections) and, when `follow`, redirects.
   * Returns the final response; the caller reads or discards its body.
   */
  async request(pathOrUrl: string, o: RequestOptions): Promise<Response> {
    await this.ping();
    return this.withRetries(`${o.method ?? 'GET'} ${pathOrUrl}`, async () => {
      let url = new URL(pathOrUrl, this.baseUrl);
      let reauthed = false;
      for (let hops = 0; ; hops++) {
        const res = await this.raw(url, o, await this.authFor(o.scopes, url));
        if (res.status === 401 && url.host === this.host && !reauthed) {
          res.body.resume();
          const ch = parseChallenges(header(res.headers, 'www-authenticate'))[0];
          if (ch) this.challenge = ch;
          this.tokens.delete(o.scopes.join(' '));
          reauthed = true;
          continue;
        }
        if (o.follow && res.status >= 300 && res.status < 400 && res.headers.location) {
          res.body.resume();
          if (hops >= 5) throw new RegistryError(`too many redirects for ${pathOrUrl}`, res.status, false);
          url = new URL(res.headers.location, url);
          continue;
        }
        if (res.status >= 500 || res.status === 429) {
          const body = await readAll(res.body, 4096).catch(() => Buffer.alloc(0));
          throw new RegistryError(`${this.domain} answered ${res.status} to ${o.method ?? 'GET'} ${url.pathname}: ${body.toString('utf8').trim().slice(0, 200)}`, res.status, true);
        }
        return res;
      }
    });
  }

  /** Turns a non-2xx response into an error naming the object, reading the registry's error body. */
  async fail(res: Response, what: string): Promise<never> {
    const body = await readAll(res.body, 64 << 10).catch(() => Buffer.alloc(0));
    let detail = '';
    try {
      const j = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
      detail = (j.errors ?? []).map((e) => `${e.code ?? ''}${e.message ? ` ${e.message}` : ''}`.trim()).join('; ');
    } catch {
      detail = body.toString('utf8').trim().slice(0, 200);
    }
    const hint = res.status === 401 || res.status === 403 ? `; check credentials (gantry login ${this.domain})` : '';
    throw new RegistryError(`${what} in ${this.domain} (${res.status}${detail ? `: ${detail}` : ''})${hint}`, res.status, false);
  }

  // ------------------------------------------------------------ manifests

  async getManifest(repo: string, reference: string, accept: string): Promise<{ body: Buffer; mediaType: string; digest?: string }> {
    const res = await this.request(`/v2/${repo}/manifests/${reference}`, { headers: { accept }, scopes: [repoScope(repo, ['pull'])] });
    if (res.status !== 200) return this.fail(res, `manifest "${repo}:${reference}" not found or not readable`);
    const body = await readAll(res.body, MAX_MANIFEST);
    return { body, mediaType: header(res.headers, 'content-type') ?? '', digest: header(res.headers, 'docker-content-digest') };
  }

  /** HEAD a manifest: its digest, or undefined when absent. */
  async headManifest(repo: string, reference: string, accept: string): Promise<{ digest?: string; mediaType: string; size: number } | undefined> {
    const res = await this.request(`/v2/${repo}/manifests/${reference}`, { method: 'HEAD', headers: { accept }, scopes: [repoScope(repo, ['pull'])] });
    res.body.resume();
    if (res.status === 404) return undefined;
    if (res.status !== 200) return this.fail(res, `manifest "${repo}:${reference}"`);
    return { digest: header(res.headers, 'docker-content-digest'), mediaType: header(res.headers, 'content-type') ?? '', size: Number(header(res.headers, 'content-length') ?? -1) };
  }

  async putManifest(repo: string, reference: string, body: Buffer, mediaType: string): Promise<string | undefined> {
    const res = await this.request(`/v2/${repo}/manifests/${reference}`, {
      method: 'PUT', headers: { 'content-type': mediaType }, body, scopes: [repoScope(repo, ['pull', 'push'])],
    });
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) return this.fail(res, `upload of manifest "${repo}:${reference}" refused`);
    res.body.resume();
    return header(res.headers, 'docker-content-digest');
  }

  // ------------------------------------------------------------ blobs

  /** Opens a blob (following redirects) from byte `offset`; `partial` tells whether the server honoured the range. */
  async openBlob(repo: string, digest: string, offset = 0): Promise<{ body: http.IncomingMessage; partial: boolean; length: number }> {
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const res = await this.request(`/v2/${repo}/blobs/${digest}`, { headers, scopes: [repoScope(repo, ['pull'])], follow: true });
    if (res.status === 200 || res.status === 206) {
      return { body: res.body, partial: res.status === 206, length: Number(header(res.headers, 'content-length') ?? -1) };
    }
    if (res.status === 416 && offset > 0) {
      res.body.resume();
      return this.openBlob(repo, digest, 0);
    }
    return this.fail(res, `blob ${digest} of "${repo}" not found`);
  }

  /** Small blob (config) into memory. */
  async getBlob(repo: string, digest: string, max = 16 << 20): Promise<Buffer> {
    const b = await this.openBlob(repo, digest);
    return readAll(b.body, max);
  }

  /** Size of a blob in the repository, or undefined. */
  async hasBlob(repo: string, digest: string, scopes = [repoScope(repo, ['pull'])]): Promise<number | undefined> {
    const res = await this.request(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD', scopes, follow: true });
    res.body.resume();
    if (res.status === 200) return Number(header(res.headers, 'content-length') ?? 0);
    if (res.status === 404) return undefined;
    return this.fail(res, `blob ${digest} of "${repo}"`);
  }

  /** Cross-repository mount: true when the registry linked the blob without an upload. */
  async mountBlob(repo: string, digest: string, from: string): Promise<{ mounted: true } | { mounted: false; location?: string }> {
    const res = await this.request(`/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, {
      method: 'POST', headers: { 'content-length': '0' }, body: Buffer.alloc(0),
      scopes: [repoScope(repo, ['pull', 'push']), repoScope(from, ['pull'])],
    });
    res.body.resume();
    if (res.status === 201) return { mounted: true };
    if (res.status === 202) return { mounted: false, location: header(res.headers, 'location') };
    return this.fail(res, `blob mount of ${digest} from "${from}" to "${repo}"`);
  }

  /** Starts an upload session; returns its Location. */
  async startUpload(repo: string): Promise<string> {
    const res = await this.request(`/v2/${repo}/blobs/uploads/`, {
      method: 'POST', headers: { 'content-length': '0' }, body: Buffer.alloc(0), scopes: [repoScope(repo, ['pull', 'push'])],
    });
    res.body.resume();
    const loc = header(res.headers, 'location');
    if (res.status !== 202 || !loc) return this.fail(res, `upload to "${repo}" refused`);
    return loc;
  }

  /** Monolithic upload: one PUT with the whole blob (from a reader factory, so a retry can restart). */
  async putBlob(repo: string, location: string, digest: string, size: number, open: () => Readable): Promise<void> {
    const url = withDigest(location, digest, this.baseUrl);
    const res = await this.request(url, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) }, body: open,
      scopes: [repoScope(repo, ['pull', 'push'])],
    });
    if (res.status !== 201) return this.fail(res, `upload of blob ${digest} to "${repo}" refused`);
    res.body.resume();
  }

  /** Chunked upload: PATCH each chunk (Content-Range), then PUT ?digest= to close. */
  async putBlobChunked(repo: string, location: string, digest: string, size: number, readChunk: (start: number, end: number) => Promise<Buffer>, chunkSize: number): Promise<void> {
    let loc = location;
    const scopes = [repoScope(repo, ['pull', 'push'])];
    for (let start = 0; start < size; start += chunkSize) {
      const end = Math.min(size, start + chunkSize);
      const body = await readChunk(start, end);
      const res = await this.request(loc, {
        method: 'PATCH',
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end - 1}` },
        body, scopes,
      });
      if (res.status !== 202) return this.fail(res, `chunk ${start}-${end - 1} of blob ${digest} to "${repo}" refused`);
      res.body.resume();
      loc = header(res.headers, 'location') ?? loc;
    }
    const res = await this.request(withDigest(loc, digest, this.baseUrl), { method: 'PUT', headers: { 'content-length': '0' }, body: Buffer.alloc(0), scopes });
    if (res.status !== 201) return this.fail(res, `closing upload of blob ${digest} to "${repo}" refused`);
    res.body.resume();
  }

  async listTags(repo: string): Promise<string[]> {
    const res = await this.request(`/v2/${repo}/tags/list`, { scopes: [repoScope(repo, ['pull'])] });
    if (res.status !== 200) return this.fail(res, `tags of "${repo}"`);
    return (JSON.parse((await readAll(res.body, MAX_MANIFEST)).toString('utf8')) as { tags?: string[] }).tags ?? [];
  }
}

function withDigest(location: string, digest: string, base: string): string {
  const u = new URL(location, base);
  u.searchParams.set('digest', digest);
  return u.toString();
}

function isTlsMismatch(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  return code === 'EPROTO' || code === 'ECONNRESET' || /wrong version number|SSL routines|packet length too long/.test(String((e as Error)?.message));
}

function isCertError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code);
}

export function header(h: http.IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export async function readAll(body: Readable, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > max) {
      body.destroy();
      throw new RegistryError(`response larger than ${max} bytes`, 0, false);
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}
