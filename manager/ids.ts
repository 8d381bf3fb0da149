// Object ids: 25 lowercase base-32 characters from 128 random bits, like swarmkit's, so that
// a short prefix is enough to name an object on the command line.
import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

export function newId(): string {
  const bytes = randomBytes(16);
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out.slice(0, 25);
}
