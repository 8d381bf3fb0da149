// Registry auth decisions (pure): parsing WWW-Authenticate challenges, the token request URL for a
// Bearer challenge, and the Authorization header for Basic credentials.

export interface Challenge {
  scheme: string; // lowercase: "bearer" | "basic" | …
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (several challenges allowed) per RFC 7235. */
export function parseChallenges(header: string | undefined): Challenge[] {
  if (!header) return [];
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  while (i < s.length) {
    skipWs();
    while (s[i] === ',') {
      i++;
      skipWs();
    }
    const m = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(s.slice(i));
    if (!m) break;
    const scheme = m[0].toLowerCase();
    i += m[0].length;
    const params: Record<string, string> = {};
    for (;;) {
      skipWs();
      const pm = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*/.exec(s.slice(i));
      if (!pm) break;
      // a new scheme starts with a token not followed by '='
      i += pm[0].length;
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++;
      } else {
        const vm = /^[^,\s]*/.exec(s.slice(i));
        value = vm ? vm[0] : '';
        i += value.length;
      }
      params[pm[1].toLowerCase()] = value;
      skipWs();
      if (s[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    out.push({ scheme, params });
  }
  return out;
}

/** The scope string for a repository: `repository:team/app:pull,push`. */
export function repoScope(repo: string, actions: string[]): string {
  return `repository:${repo}:${actions.join(',')}`;
}

/** GET URL of the token endpoint for a Bearer challenge and the scopes wanted. */
export function tokenUrl(ch: Challenge, scopes: string[]): string {
  const realm = ch.params.realm;
  if (!realm) throw new Error('registry sent a Bearer challenge without a realm');
  const u = new URL(realm);
  if (ch.params.service) u.searchParams.set('service', ch.params.service);
  for (const sc of scopes) u.searchParams.append('scope', sc);
  return u.toString();
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}
