// The local unary socket's frames (gantryd serves it beside the gRPC socket: cli/daemon/unary-socket.ts).
// A CLI command that only makes unary calls needs neither http2 nor grpc-js for it, which is about
// half of a short command's time. The messages are the gRPC methods' own protobuf encodings.
//
//   request:  u32 length | u32 id | u16 path length | path ("/gantry.v1.Control/ListNodes") | request bytes
//   response: u32 length | u32 id | u8 status (0 = OK, else a gRPC status code) | response bytes, or the error text
//
// length counts what follows it. Requests on one connection may overlap; answers carry their id.

/** Where gantryd serves unary calls for the gRPC socket at `grpcSocket`. */
export function unarySocketPath(grpcSocket: string): string {
  return `${grpcSocket}.unary`;
}

/** Larger frames are refused (the gRPC socket's receive limit is the same). */
export const MAX_FRAME = 64 << 20;

export interface UnaryRequest {
  id: number;
  path: string;
  body: Buffer;
}

export interface UnaryResponse {
  id: number;
  /** 0 = OK (body is the response), else a gRPC status code (body is the message, UTF-8). */
  status: number;
  body: Buffer;
}

export function encodeRequest(r: UnaryRequest): Buffer {
  const path = Buffer.from(r.path);
  const head = Buffer.alloc(10);
  head.writeUInt32BE(4 + 2 + path.length + r.body.length, 0);
  head.writeUInt32BE(r.id, 4);
  head.writeUInt16BE(path.length, 8);
  return Buffer.concat([head, path, r.body]);
}

export function encodeResponse(r: UnaryResponse): Buffer {
  const head = Buffer.alloc(9);
  head.writeUInt32BE(4 + 1 + r.body.length, 0);
  head.writeUInt32BE(r.id, 4);
  head.writeUInt8(r.status, 8);
  return Buffer.concat([head, r.body]);
}

/**
 * Cuts whole frames off a byte stream: push() what arrived, get the complete frames' payloads
 * (what follows each length). Throws on a frame longer than MAX_FRAME.
 */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.pending.length >= 4) {
      const len = this.pending.readUInt32BE(0);
      if (len > MAX_FRAME) throw new Error(`unary socket: a frame of ${len} bytes is over the ${MAX_FRAME}-byte limit`);
      if (this.pending.length < 4 + len) break;
      out.push(this.pending.subarray(4, 4 + len));
      this.pending = this.pending.subarray(4 + len);
    }
    return out;
  }
}

export function decodeRequest(payload: Buffer): UnaryRequest {
  if (payload.length < 6) throw new Error('unary socket: a request frame too short for its header');
  const pathLen = payload.readUInt16BE(4);
  if (payload.length < 6 + pathLen) throw new Error('unary socket: a request frame shorter than its method path');
  return { id: payload.readUInt32BE(0), path: payload.subarray(6, 6 + pathLen).toString(), body: payload.subarray(6 + pathLen) };
}

export function decodeResponse(payload: Buffer): UnaryResponse {
  if (payload.length < 5) throw new Error('unary socket: a response frame too short for its header');
  return { id: payload.readUInt32BE(0), status: payload.readUInt8(4), body: payload.subarray(5) };
}
