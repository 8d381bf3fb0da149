// Starts Debian's docker-registry on 127.0.0.1 (free port, temp storage): open, with htpasswd Basic auth, or
// with token auth backed by a small token server here that signs ES256 JWTs with a throwaway key and cert.
import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Registry {
  /** "127.0.0.1:PORT" */
  addr: string;
  /** Storage directory (to look at or corrupt blobs in tests). */
  storage: string;
  /** TLS mode: the registry's self-signed certificate (PEM), to trust as its CA. */
  caCert?: string;
  /** Token requests seen (token mode): scope strings and the user. */
  tokenRequests: Array<{ user?: string; scopes: string[] }>;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  auth?: 'none' | 'basic' | 'token';
  /** user → password (basic and token modes). */
  users?: Record<string, string>;
  /** Actions granted to requests without credentials in token mode (default: none). */
  anonymousActions?: string[];
  /** Serve HTTPS with a fresh self-signed certificate for 127.0.0.1 (its PEM is in `caCert`). */
  tls?: boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export async function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-registry-'));
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(storage);
  const port = await freePort();
  const addr = `127.0.0.1:${port}`;
  const users = opts.users ?? { alice: 'wonderland' };
  const tokenRequests: Registry['tokenRequests'] = [];
  let tokenServer: http.Server | undefined;
  let authYaml = '';
  if (opts.auth === 'basic') {
    const file = path.join(dir, 'htpasswd');
    const lines = Object.entries(users).map(([u, p]) => execFileSync('htpasswd', ['-Bbn', u, p], { encoding: 'utf8' }).trim());
    fs.writeFileSync(file, `${lines.join('\n')}\n`);
    authYaml = `auth:\n  htpasswd:\n    realm: gantry-test\n    path: ${file}\n`;
  } else if (opts.auth === 'token') {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=gantry-test-token'], { stdio: 'ignore' });
    const privateKey = crypto.createPrivateKey(fs.readFileSync(key));
    const der = new crypto.X509Certificate(fs.readFileSync(cert)).raw;
    const tport = await freePort();
    tokenServer = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', `http://127.0.0.1:${tport}`);
      const scopes = u.searchParams.getAll('scope');
      let user: string | undefined;
      const auth = req.headers.authorization;
      if (auth?.startsWith('Basic ')) {
        const [name, pass] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
        if (users[name] !== pass) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
          return;
        }
        user = name;
      }
      tokenRequests.push({ user, scopes });
      const access = scopes.map((s) => {
        const [type, ...rest] = s.split(':');
        const actions = (rest.pop() ?? '').split(',');
        const allowed = user ? actions : actions.filter((a) => (opts.anonymousActions ?? []).includes(a));
        return { type, name: rest.join(':'), actions: allowed };
      });
      const now = Math.floor(Date.now() / 1000);
      const header = { alg: 'ES256', typ: 'JWT', x5c: [der.toString('base64')] };
      const claims = { iss: 'gantry-test-issuer', sub: user ?? '', aud: 'gantry-test-registry', exp: now + 300, nbf: now - 10, iat: now, jti: crypto.randomUUID(), access };
      const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
      const sig = crypto.sign('sha256', Buffer.from(signing), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${signing}.${b64url(sig)}`, expires_in: 300 }));
    });
    await new Promise<void>((r) => tokenServer?.listen(tport, '127.0.0.1', r));
    authYaml = `auth:\n  token:\n    realm: http://127.0.0.1:${tport}/token\n    service: gantry-test-registry\n    issuer: gantry-test-issuer\n    rootcertbundle: ${cert}\n`;
  }
  let tlsYaml = '';
  let caCert: string | undefined;
  if (opts.tls) {
    const key = path.join(dir, 'tls-key.pem');
    const cert = path.join(dir, 'tls-cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    tlsYaml = `  tls:\n    certificate: ${cert}\n    key: ${key}\n`;
    caCert = fs.readFileSync(cert, 'utf8');
  }
  const config = path.join(dir, 'config.yml');
  fs.writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: ${addr}\n${tlsYaml}${authYaml}`,
  );
  const proc = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  let exited = false;
  proc.on('exit', () => {
    exited = true;
  });
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      await new Promise<void>((r) => {
        if (exited) r();
        else proc.once('exit', () => r());
        setTimeout(() => {
          if (!exited) proc.kill('SIGKILL');
        }, 3000).unref();
      });
    }
    await new Promise<void>((r) => (tokenServer ? tokenServer.close(() => r()) : r()));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    if (exited) {
      await stop();
      throw new Error(`docker-registry exited: ${stderr.trim()}`);
    }
    const ok = await new Promise<boolean>((r) => {
      const req = (opts.tls ? https : http).get(`${opts.tls ? 'https' : 'http'}://${addr}/v2/`, { rejectUnauthorized: false }, (res) => {
        res.resume();
        r(true);
      });
      req.on('error', () => r(false));
    });
    if (ok) break;
    if (i > 100) {
      await stop();
      throw new Error(`docker-registry did not answer on ${addr}: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { addr, storage, tokenRequests, caCert, stop };
}
