// A small check of image references ([registry[:port]/]path[:tag][@digest]) for the control API.
// The full parser lives in worker/image; the manager must not import worker code, so this only validates.

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::\d{1,5})?$|^\[[0-9a-fA-F:]+\](?::\d{1,5})?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/;

export type ImageRefCheck = { ok: true; digest?: string } | { ok: false; error: string };

/** Checks `ref`; returns the digest when the reference pins one (name@sha256:...). */
export function checkImageRef(ref: string): ImageRefCheck {
  const bad = (why: string): ImageRefCheck => ({ ok: false, error: `image "${ref}" is not a valid reference: ${why}` });
  if (ref === '') return { ok: false, error: 'image is required (gantry service create [OPTIONS] IMAGE [CMD...])' };
  if (ref.length > 4096) return bad('longer than 4096 characters');
  if (/\s/.test(ref)) return bad('it contains whitespace');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return bad(`digest "${digest}" is not ALGORITHM:HEX (e.g. sha256:<64 hex digits>)`);
  }
  const parts = rest.split('/');
  const first = parts[0];
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
    if (!DOMAIN.test(first)) return bad(`registry "${first}" is not a host[:port]`);
    parts.shift();
  }
  const lastIdx = parts.length - 1;
  const colon = parts[lastIdx].indexOf(':');
  if (colon >= 0) {
    const tag = parts[lastIdx].slice(colon + 1);
    parts[lastIdx] = parts[lastIdx].slice(0, colon);
    if (!TAG.test(tag)) return bad(`tag "${tag}" must be 1-128 of letters, digits, '_', '.', '-' (not starting with '.' or '-')`);
  }
  for (const c of parts) {
    if (c === '') return bad('it has an empty path component');
    if (c !== c.toLowerCase()) return bad('repository names must be lowercase');
    if (!COMPONENT.test(c)) return bad(`path component "${c}" may only hold lowercase letters, digits and separators (. _ __ -)`);
  }
  return digest ? { ok: true, digest } : { ok: true };
}
