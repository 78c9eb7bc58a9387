import {createRequire} from 'node:module';

// The daemon's modules take these built-ins from here, through require() instead of import. For
// an import, Node 24 builds the module's ES namespace by reading every export, and getters such
// as http.WebSocket (undici, 11 MB resident), fs.promises, util.diff, crypto.webcrypto and
// net.BlockList load modules the daemon never uses: 1 MB resident more at idle without the
// first (bench/results/2026-11-30.md).
const requireBuiltin = createRequire(import.meta.url);

export const crypto = requireBuiltin('node:crypto') as typeof import('node:crypto');
export const fs = requireBuiltin('node:fs') as typeof import('node:fs');
export const http = requireBuiltin('node:http') as typeof import('node:http');
export const net = requireBuiltin('node:net') as typeof import('node:net');
export const util = requireBuiltin('node:util') as typeof import('node:util');

/** node:https when first needed: it loads TLS, 3 MB resident that a daemon without https callbacks never uses. */
export function https(): typeof import('node:https') {
  return requireBuiltin('node:https') as typeof import('node:https');
}

/** node:tls when first needed, as node:https. */
export function tls(): typeof import('node:tls') {
  return requireBuiltin('node:tls') as typeof import('node:tls');
}

/** node:v8 when first needed: to turn on its linear-time regular expressions for key patterns. */
export function v8(): typeof import('node:v8') {
  return requireBuiltin('node:v8') as typeof import('node:v8');
}
