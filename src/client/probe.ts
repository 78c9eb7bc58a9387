import {http, https} from '../common/node-builtins.js';
import type {BindAddress} from '../config/bind.js';
import {formatBindAddress} from '../config/bind.js';

export interface BindProbe {
  address: string;
  answers: boolean;
  version?: string;
  error?: string;
}

/** The address to connect to for a bind address: a wildcard is reached through loopback. */
export function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

export function baseUrl(address: BindAddress, port = address.port): string {
  return `${address.tls ? 'https' : 'http'}://${formatBindAddress(connectHost(address.host), port)}`;
}

/**
 * Whether a sidecar answers `GET /` there, and with which version. Over HTTPS the certificate is
 * not checked: the greeting carries no secret, and the name in the certificate is rarely the
 * address probed.
 */
export function probeBind(address: BindAddress, timeoutMs = 2000, port = address.port): Promise<BindProbe> {
  return new Promise((resolve) => {
    const get = address.tls ? https().request : http.request;
    const req = get(`${baseUrl(address, port)}/`, {timeout: timeoutMs, ...(address.tls ? {rejectUnauthorized: false} : {})}, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        const version = /^\* Version: (\S+)$/m.exec(body)?.[1];
        resolve(
          res.statusCode === 200 && body.startsWith('Welcome to DataFlux Func Sidecar')
            ? {address: address.label, answers: true, ...(version ? {version} : {})}
            : {address: address.label, answers: false, error: `HTTP ${res.statusCode}: not a sidecar`},
        );
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({address: address.label, answers: false, error: error.code ?? error.message}));
    req.end();
  });
}
