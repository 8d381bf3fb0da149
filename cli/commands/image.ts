// `gantry image pull|push|ls|rm|inspect|tag|prune|import|save|load` (+ docker's top-level aliases): thin
// gRPC calls to gantryd's Images service, with per-layer progress bars on a terminal and plain lines otherwise.
import * as fs from 'node:fs';
import { Writable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { bool, list, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { callError } from '../connection.ts';
import { FORMAT_FLAG, json, outputFormat, table } from '../format.ts';
import { formatBytes, humanDuration } from '../units.ts';
import {
  type ImageDetail, type ImageImportChunk, type ImageListResponse, type ImagePruneResponse, type ImagePullEvent, type ImageProgress,
  type ImageRemoveResponse, ImagesClient, type ImageSummary,
} from '../../proto/gen/gantry/v1/images.ts';
import { authFor } from './login.ts';

function images(ctx: CommandContext) {
  const conn = ctx.connect();
  return { conn, client: conn.client(ImagesClient) };
}

/** A unary call with a deadline, as a promise; failures become CallErrors naming the daemon. */
function unaryCall<Res>(ctx: CommandContext, fn: (md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown, timeoutMs = 120_000): Promise<Res> {
  const conn = ctx.connect();
  return new Promise((resolve, reject) => {
    fn(new Metadata(), { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(callError(e, conn.target)) : resolve(r)));
  });
}

// ------------------------------------------------------------------ progress

const STATUS_TEXT: Record<string, string> = {
  waiting: 'Waiting', downloading: 'Downloading', verifying: 'Verifying Checksum', extracting: 'Extracting',
  done: 'Pull complete', exists: 'Already exists', retrying: 'Retrying', pushing: 'Pushing', mounted: 'Mounted from', resolving: 'Resolving',
};

/** One line per layer: redrawn in place on a terminal; on a pipe, a line per status change. */
export class ProgressView {
  private out: NodeJS.WritableStream;
  private tty: boolean;
  private push: boolean;
  private order: string[] = [];
  private state = new Map<string, ImageProgress>();
  private drawn = 0;
  /** Whether any layer was actually transferred (Docker's "Downloaded newer image" vs "up to date"). */
  transferred = false;

  constructor(out: NodeJS.WritableStream, tty: boolean, push = false) {
    this.out = out;
    this.tty = tty;
    this.push = push;
  }

  static line(p: ImageProgress, push: boolean): string {
    let status = STATUS_TEXT[p.status] ?? p.status;
    if (push && p.status === 'done') status = 'Pushed';
    if (p.status === 'exists' && push) status = 'Layer already exists';
    const id = p.id.slice(7, 19);
    if ((p.status === 'downloading' || p.status === 'pushing') && p.total > 0) {
      const width = 40;
      const filled = Math.min(width, Math.floor((p.current / p.total) * width));
      const bar = `[${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(width - filled)}]`;
      return `${id}: ${status} ${bar} ${formatBytes(p.current)}/${formatBytes(p.total)}`;
    }
    if (p.status === 'mounted') return `${id}: ${status} ${p.message.replace(/^from /, '')}`;
    if (p.status === 'retrying') return `${id}: ${status}: ${p.message}`;
    return `${id}: ${status}`;
  }

  update(p: ImageProgress): void {
    if (!p.id) {
      if (p.message && p.status !== 'done' && p.status !== 'resolving') this.print(`${p.message}\n`);
      return;
    }
    const prev = this.state.get(p.id);
    if (!prev) this.order.push(p.id);
    if (p.status === 'downloading' || p.status === 'pushing' || p.status === 'extracting') this.transferred = true;
    this.state.set(p.id, p);
    if (this.tty) this.redraw();
    else if (!prev || prev.status !== p.status) this.out.write(`${ProgressView.line(p, this.push)}\n`);
  }

  private print(s: string): void {
    if (this.tty) {
      this.clear();
      this.out.write(s);
      this.redraw();
    } else this.out.write(s);
  }

  private clear(): void {
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A`);
    for (let i = 0; i < this.drawn; i++) this.out.write('\x1b[2K\n');
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A`);
    this.drawn = 0;
  }

  private redraw(): void {
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A`);
    for (const id of this.order) {
      const p = this.state.get(id);
      if (p) this.out.write(`\x1b[2K${ProgressView.line(p, this.push)}\n`);
    }
    this.drawn = this.order.length;
  }
}

async function consume(ctx: CommandContext, stream: grpc.ClientReadableStream<ImagePullEvent>, view: ProgressView): Promise<ImagePullEvent['event']> {
  const conn = ctx.connect();
  let last: ImagePullEvent['event'];
  try {
    for await (const ev of stream as AsyncIterable<ImagePullEvent>) {
      if (ev.event?.$case === 'progress') view.update(ev.event.value);
      else last = ev.event;
    }
  } catch (e) {
    throw callError(e as grpc.ServiceError, conn.target);
  }
  return last;
}

// ------------------------------------------------------------------ commands

const pull: Command = {
  path: ['image', 'pull'],
  aliases: [['pull']],
  summary: 'Download an image from a registry',
  usage: 'gantry image pull [OPTIONS] NAME[:TAG|@DIGEST]',
  flags: [
    { name: 'platform', kind: 'string', help: 'os/arch[/variant] to pick from a multi-platform image' },
    { name: 'insecure-registry', kind: 'bool', help: 'plain HTTP / no TLS verification for this registry' },
    { name: 'quiet', short: 'q', kind: 'bool', help: 'print only the image name' },
  ],
  async run(args, ctx) {
    const [ref] = args.positionals;
    if (!ref || args.positionals.length > 1) throw new UsageError('pull takes exactly one image reference');
    const { client } = images(ctx);
    const stream = client.pull({ ref, platform: str(args, 'platform') ?? '', insecure: bool(args, 'insecure-registry'), auth: authFor(ctx.env, ref) });
    const quiet = bool(args, 'quiet');
    const view = new ProgressView(quiet ? devNull : ctx.out, ctx.isTTY && !quiet);
    const last = await consume(ctx, stream, view);
    if (last?.$case !== 'done') throw new Error('gantryd ended the pull without a result');
    const s = last.value;
    if (quiet) {
      ctx.out.write(`${ref}\n`);
      return 0;
    }
    ctx.out.write(`Digest: ${s.repoDigests.find((d) => d.includes('@'))?.split('@')[1] ?? s.manifestDigest}\n`);
    ctx.out.write(`Status: ${view.transferred ? 'Downloaded newer image' : 'Image is up to date'} for ${s.repoTags[0] ?? ref}\n`);
    return 0;
  },
};

const devNull: NodeJS.WritableStream = new Writable({ write: (_c, _e, cb) => cb() });

const push: Command = {
  path: ['image', 'push'],
  aliases: [['push']],
  summary: 'Upload an image to a registry',
  usage: 'gantry image push [OPTIONS] NAME[:TAG]',
  flags: [
    { name: 'insecure-registry', kind: 'bool', help: 'plain HTTP / no TLS verification for this registry' },
    { name: 'chunked', kind: 'bool', help: 'upload blobs in 5MiB PATCH chunks' },
    { name: 'quiet', short: 'q', kind: 'bool', help: 'print only the digest' },
  ],
  async run(args, ctx) {
    const [ref] = args.positionals;
    if (!ref || args.positionals.length > 1) throw new UsageError('push takes exactly one image reference');
    const { client } = images(ctx);
    const stream = client.push({ ref, insecure: bool(args, 'insecure-registry'), chunked: bool(args, 'chunked'), auth: authFor(ctx.env, ref) });
    const quiet = bool(args, 'quiet');
    const view = new ProgressView(quiet ? devNull : ctx.out, ctx.isTTY && !quiet, true);
    const last = await consume(ctx, stream, view);
    if (last?.$case !== 'pushed') throw new Error('gantryd ended the push without a result');
    const r = last.value;
    ctx.out.write(quiet ? `${r.digest}\n` : `${ref.replace(/^.*\//, '').replace(/:.*/, '')}: digest: ${r.digest} size: ${r.size}\n`);
    return 0;
  },
};

function splitTag(t: string): [string, string] {
  const i = t.lastIndexOf(':');
  return i > t.lastIndexOf('/') ? [t.slice(0, i), t.slice(i + 1)] : [t, '<none>'];
}

export function imageRows(list: ImageSummary[], opts: { digests: boolean; noTrunc: boolean; now: number }): string[][] {
  const rows: string[][] = [];
  for (const s of list) {
    const id = opts.noTrunc ? s.id : s.id.slice(7, 19);
    const created = s.created ? `${humanDuration(opts.now - Date.parse(s.created))} ago` : '';
    const names = s.repoTags.length ? s.repoTags.map(splitTag) : [[s.repoDigests[0]?.split('@')[0] ?? '<none>', '<none>'] as [string, string]];
    for (const [repo, tag] of names) {
      const digest = s.repoDigests.find((d) => d.startsWith(`${repo}@`))?.split('@')[1] ?? '<none>';
      rows.push([repo, tag, ...(opts.digests ? [digest] : []), id, created, formatBytes(s.size)]);
    }
  }
  return rows;
}

const ls: Command = {
  path: ['image', 'ls'],
  aliases: [['images'], ['image', 'list']],
  summary: 'List images on this host',
  usage: 'gantry image ls [OPTIONS] [REPOSITORY[:TAG]]',
  flags: [
    { name: 'all', short: 'a', kind: 'bool', help: 'show untagged images too' },
    { name: 'quiet', short: 'q', kind: 'bool', help: 'print only image ids' },
    { name: 'digests', kind: 'bool', help: 'show digests' },
    { name: 'no-trunc', kind: 'bool', help: 'do not truncate ids' },
    FORMAT_FLAG,
  ],
  async run(args, ctx) {
    const format = outputFormat(args);
    const { client } = images(ctx);
    const res = await unaryCall<ImageListResponse>(ctx, (md, o, cb) => client.list({ all: bool(args, 'all'), reference: args.positionals[0] ?? '' }, md, o, cb));
    if (format === 'json') {
      ctx.out.write(json(res.images));
      return 0;
    }
    if (bool(args, 'quiet')) {
      for (const s of res.images) ctx.out.write(`${bool(args, 'no-trunc') ? s.id : s.id.slice(7, 19)}\n`);
      return 0;
    }
    const digests = bool(args, 'digests');
    ctx.out.write(table(['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'], imageRows(res.images, { digests, noTrunc: bool(args, 'no-trunc'), now: Date.now() })));
    return 0;
  },
};

/** Docker's `image inspect` shape, from what gantryd returns. */
export function dockerInspect(d: ImageDetail): Record<string, unknown> {
  const cfg = JSON.parse(d.configJson || '{}') as Record<string, unknown> & { rootfs?: unknown; config?: unknown };
  return {
    Id: d.summary?.id,
    RepoTags: d.summary?.repoTags ?? [],
    RepoDigests: d.summary?.repoDigests ?? [],
    Created: cfg.created,
    Author: cfg.author ?? '',
    Architecture: cfg.architecture,
    Variant: cfg.variant,
    Os: cfg.os,
    Size: d.summary?.size,
    Config: cfg.config ?? {},
    RootFS: cfg.rootfs,
    History: cfg.history,
    Descriptor: { mediaType: d.mediaType, digest: d.summary?.manifestDigest, indexDigest: d.indexDigest || undefined },
    GraphDriver: { Name: 'overlay', Data: { LowerDirs: d.layers.map((l) => l.snapshotDir) } },
    InUseBy: d.summary?.inUseBy ?? [],
  };
}

const inspect: Command = {
  path: ['image', 'inspect'],
  summary: 'Show the details of images as JSON',
  usage: 'gantry image inspect [OPTIONS] IMAGE [IMAGE...]',
  flags: [FORMAT_FLAG],
  async run(args, ctx) {
    outputFormat(args);
    if (args.positionals.length === 0) throw new UsageError('inspect needs at least one image');
    const { client } = images(ctx);
    const out: unknown[] = [];
    let code = 0;
    for (const ref of args.positionals) {
      try {
        out.push(dockerInspect(await unaryCall<ImageDetail>(ctx, (md, o, cb) => client.inspect({ ref }, md, o, cb))));
      } catch (e) {
        ctx.err.write(`Error: ${(e as Error).message}\n`);
        code = 1;
      }
    }
    ctx.out.write(json(out));
    return code;
  },
};

const rm: Command = {
  path: ['image', 'rm'],
  aliases: [['rmi'], ['image', 'remove']],
  summary: 'Remove images (an image a container uses only with --force)',
  usage: 'gantry image rm [OPTIONS] IMAGE [IMAGE...]',
  flags: [{ name: 'force', short: 'f', kind: 'bool', help: 'untag an image even if containers use it' }],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('rm needs at least one image');
    const { client } = images(ctx);
    const res = await unaryCall<ImageRemoveResponse>(ctx, (md, o, cb) => client.remove({ refs: args.positionals, force: bool(args, 'force') }, md, o, cb));
    for (const u of res.untagged) ctx.out.write(`Untagged: ${u}\n`);
    for (const d of res.deleted) ctx.out.write(`Deleted: ${d}\n`);
    for (const e of res.errors) ctx.err.write(`Error: ${e}\n`);
    return res.errors.length ? 1 : 0;
  },
};

const tag: Command = {
  path: ['image', 'tag'],
  aliases: [['tag']],
  summary: 'Give an image another name',
  usage: 'gantry image tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
  flags: [],
  async run(args, ctx) {
    if (args.positionals.length !== 2) throw new UsageError('tag takes SOURCE and TARGET');
    const { client } = images(ctx);
    await unaryCall<ImageSummary>(ctx, (md, o, cb) => client.tag({ source: args.positionals[0], target: args.positionals[1] }, md, o, cb));
    return 0;
  },
};

const prune: Command = {
  path: ['image', 'prune'],
  summary: 'Remove dangling images and every blob and layer no image uses',
  usage: 'gantry image prune [OPTIONS]',
  flags: [
    { name: 'all', short: 'a', kind: 'bool', help: 'remove every image no container uses, not just dangling ones' },
    { name: 'force', short: 'f', kind: 'bool', help: 'do not prompt (gantry never prompts)' },
  ],
  async run(args, ctx) {
    const { client } = images(ctx);
    const r = await unaryCall<ImagePruneResponse>(ctx, (md, o, cb) => client.prune({ all: bool(args, 'all') }, md, o, cb), 600_000);
    for (const id of r.images) ctx.out.write(`Deleted Images:\ndeleted: ${id}\n`);
    ctx.out.write(`Total reclaimed space: ${formatBytes(r.bytesFreed)} (${r.blobs} blobs, ${r.snapshots} layers)\n`);
    return 0;
  },
};

function inputStream(file: string): NodeJS.ReadableStream {
  return file === '-' ? process.stdin : fs.createReadStream(file, { highWaterMark: 1 << 20 });
}

/** Writes a readable into a client stream as messages, honouring backpressure. */
async function sendAll<T>(call: grpc.ClientWritableStream<T>, input: NodeJS.ReadableStream, wrap: (b: Buffer) => T): Promise<void> {
  for await (const c of input as AsyncIterable<Buffer>) {
    for (let off = 0; off < c.length; off += 1 << 20) {
      if (!call.write(wrap(c.subarray(off, off + (1 << 20))))) await new Promise((r) => call.once('drain', r));
    }
  }
  call.end();
}

const importCmd: Command = {
  path: ['image', 'import'],
  aliases: [['import']],
  summary: 'Create an image from a root filesystem tarball',
  usage: 'gantry image import [OPTIONS] FILE|- [REPOSITORY[:TAG]]',
  flags: [
    { name: 'change', short: 'c', kind: 'list', help: 'Dockerfile instruction for the config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL)' },
    { name: 'message', short: 'm', kind: 'string', help: 'commit message for the history' },
  ],
  async run(args, ctx) {
    const [file, name] = args.positionals;
    if (!file || args.positionals.length > 2) throw new UsageError('import takes FILE|- and an optional REPOSITORY[:TAG]');
    const conn = ctx.connect();
    const client = conn.client(ImagesClient);
    let call!: grpc.ClientWritableStream<ImageImportChunk>;
    const result = new Promise<ImageSummary>((resolve, reject) => {
      call = client.import((e, r) => (e ? reject(callError(e, conn.target)) : resolve(r)));
    });
    call.write({ part: { $case: 'header', value: { ref: name ?? '', changes: list(args, 'change'), message: str(args, 'message') ?? '', platform: '' } } });
    const sending = sendAll(call, inputStream(file), (b) => ({ part: { $case: 'data' as const, value: b } }));
    const [s] = await Promise.all([result, sending]);
    ctx.out.write(`${s.id}\n`);
    return 0;
  },
};

const save: Command = {
  path: ['image', 'save'],
  aliases: [['save']],
  summary: 'Write images to a tar archive (docker-archive or OCI layout)',
  usage: 'gantry image save [OPTIONS] IMAGE [IMAGE...]',
  flags: [
    { name: 'output', short: 'o', kind: 'string', help: 'write to this file instead of stdout' },
    { name: 'format', kind: 'string', help: 'docker-archive (default) or oci' },
  ],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('save needs at least one image');
    const format = str(args, 'format') ?? 'docker-archive';
    if (format !== 'docker-archive' && format !== 'oci') throw new UsageError(`--format "${format}": use docker-archive or oci`);
    const output = str(args, 'output');
    if (!output && ctx.isTTY) throw new UsageError('refusing to write an archive to a terminal: use -o FILE or redirect stdout');
    const conn = ctx.connect();
    const client = conn.client(ImagesClient);
    const stream = client.save({ refs: args.positionals, format });
    const tmp = output ? `${output}.partial-${process.pid}` : undefined;
    const out: NodeJS.WritableStream = tmp ? fs.createWriteStream(tmp) : ctx.out;
    try {
      for await (const m of stream as AsyncIterable<{ data: Buffer }>) {
        if (!out.write(m.data)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
    } catch (e) {
      if (tmp) fs.rmSync(tmp, { force: true });
      throw callError(e as grpc.ServiceError, conn.target);
    }
    if (tmp && output) {
      await new Promise<void>((r, j) => (out as fs.WriteStream).end((e?: Error | null) => (e ? j(e) : r())));
      fs.renameSync(tmp, output);
    }
    return 0;
  },
};

const load: Command = {
  path: ['image', 'load'],
  aliases: [['load']],
  summary: 'Load images from a docker-archive or OCI-layout tar',
  usage: 'gantry image load [OPTIONS]',
  flags: [
    { name: 'input', short: 'i', kind: 'string', help: 'read from this file instead of stdin' },
    { name: 'quiet', short: 'q', kind: 'bool', help: 'print nothing' },
  ],
  async run(args, ctx) {
    const conn = ctx.connect();
    const client = conn.client(ImagesClient);
    let call!: grpc.ClientWritableStream<{ data: Buffer }>;
    const result = new Promise<{ loaded: string[] }>((resolve, reject) => {
      call = client.load((e, r) => (e ? reject(callError(e, conn.target)) : resolve(r)));
    });
    const sending = sendAll(call, inputStream(str(args, 'input') ?? '-'), (b) => ({ data: b }));
    const [r] = await Promise.all([result, sending]);
    if (!bool(args, 'quiet')) for (const l of r.loaded) ctx.out.write(`${l}\n`);
    return 0;
  },
};

export const commands: Command[] = [pull, push, ls, inspect, rm, tag, prune, importCmd, save, load];
