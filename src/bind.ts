import {net} from './node-builtins.js';

const {isIP, isIPv6} = net;

export interface BindAddress {
  host: string;
  port: number;
  /** Canonical `host:port` (`[v6]:port` for IPv6), as written in BIND. */
  label: string;
}

export const DEFAULT_BIND = '127.0.0.1:8099,172.17.0.1:8099';

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export class BindError extends Error {}

export function formatBindAddress(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function parseOne(item: string): BindAddress {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(item);
  const plain = /^([^:[\]]+):(\d+)$/.exec(item);
  const match = bracketed ?? plain;
  if (!match) {
    throw new BindError(`"${item}" is not host:port (write IPv6 as [::1]:8099)`);
  }
  const [, host, portText] = match;
  if (bracketed ? !isIPv6(host) : !(isIP(host) === 4 || (HOSTNAME.test(host) && !/^[\d.]+$/.test(host)))) {
    throw new BindError(`"${item}": "${host}" is not an IP address or host name`);
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port > 65_535) {
    throw new BindError(`"${item}": port ${portText} is not between 0 and 65535`);
  }
  return {host, port, label: formatBindAddress(host, port)};
}

/** Parses a BIND list such as `127.0.0.1:8099,[::1]:8099`; throws BindError naming the bad item. */
export function parseBindList(text: string): BindAddress[] {
  const items = text.split(',').map((item) => item.trim());
  if (items.length === 1 && items[0] === '') {
    throw new BindError('the list is empty: give at least one host:port, e.g. 127.0.0.1:8099');
  }
  const seen = new Set<string>();
  return items.map((item) => {
    if (item === '') throw new BindError(`"${text}" has an empty item between commas`);
    const address = parseOne(item);
    if (seen.has(address.label)) throw new BindError(`"${address.label}" is listed twice`);
    seen.add(address.label);
    return address;
  });
}
