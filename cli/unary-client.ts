// The CLI's side of the local unary socket (cli/unary-wire.ts): one connection, calls matched to
// answers by id. No http2, no grpc-js: what keeps a short command short.
import net from 'node:net';
import { decodeResponse, encodeRequest, FrameReader, type UnaryResponse } from './unary-wire.ts';

/** grpc.status.DEADLINE_EXCEEDED, without loading grpc-js for it. */
const DEADLINE_EXCEEDED = 4;

/** The socket could not be reached at all (no gantryd, or one without it): the caller may use gRPC instead. */
export class UnaryUnavailable extends Error {
  override name = 'UnaryUnavailable';
}

interface Waiting {
  resolve(r: UnaryResponse): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class UnaryClient {
  private readonly socket: net.Socket;
  private connected = false;
  private failure: Error | undefined;
  private next = 1;
  private readonly waiting = new Map<number, Waiting>();
  private readonly reader = new FrameReader();

  readonly path: string;

  constructor(path: string) {
    this.path = path;
    this.socket = net.connect(path);
    this.socket.on('connect', () => (this.connected = true));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.fail(this.connected ? new Error(`the connection to ${path} failed: ${err.message}`) : new UnaryUnavailable(`${path}: ${err.message}`)));
    this.socket.on('close', () => this.fail(this.connected ? new Error(`gantryd closed ${path} before answering`) : new UnaryUnavailable(`${path}: closed before connecting`)));
  }

  /** The connection is gone (or never came): every call on this client fails; make a new one. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Sends one request; resolves with the answer (OK or a gRPC error status), rejects when there is none. */
  call(path: string, body: Buffer, timeoutMs: number): Promise<UnaryResponse> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise<UnaryResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(Object.assign(new Error(`no answer from gantryd within ${timeoutMs} ms (${path})`), { code: DEADLINE_EXCEEDED }));
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.socket.write(encodeRequest({ id, path, body }));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      this.socket.destroy();
      return;
    }
    for (const f of frames) {
      const r = decodeResponse(f);
      const w = this.waiting.get(r.id);
      if (!w) continue;
      this.waiting.delete(r.id);
      clearTimeout(w.timer);
      w.resolve(r);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(this.failure);
    }
    this.waiting.clear();
  }
}
