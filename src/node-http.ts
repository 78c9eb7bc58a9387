import {createRequire} from 'node:module';

// Through require(), not import: Node 24 builds an ES module namespace for node:http by reading
// every export, and the http.WebSocket getter loads undici, 11 MB resident that the daemon never uses.
const requireBuiltin = createRequire(import.meta.url);

export const http = requireBuiltin('node:http') as typeof import('node:http');
export const https = requireBuiltin('node:https') as typeof import('node:https');
