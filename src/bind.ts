import {net} from './node-builtins.js';

const {isIP, isIPv6} = net;

export interface BindAddress {
  host: string;
  port: number;
  /** Served over HTTPS: written `https://host:port` in BIND. */
  tls: boolean;
  /** Canonical `host:port` (`[v6]:port` for IPv6, `https://` first for TLS), as written in BIND. */
  label: string;
}

export const DEFAULT_BIND = '127.0.0.1:8099,172.17.0.1:8099';

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export class BindError extends Error {}

export function formatBindAddress(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function parseOne(written: string): BindAddress {
  const scheme = /^(https?):\/\//i.exec(written);
  const tls = scheme?.[1].toLowerCase() === 'https';
  const item = scheme ? written.slice(scheme[0].length) : written;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(item);
  const plain = /^([^:[\]]+):(\d+)$/.exec(item);
  const match = bracketed ?? plain;
  if (!match) {
    throw new BindError(`"${written}" is not host:port or https://host:port (write IPv6 as [::1]:8099)`);
  }
  const [, host, portText] = match;
  if (bracketed ? !isIPv6(host) : !(isIP(host) === 4 || (HOSTNAME.test(host) && !/^[\d.]+$/.test(host)))) {
    throw new BindError(`"${written}": "${host}" is not an IP address or host name`);
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port > 65_535) {
    throw new BindError(`"${written}": port ${portText} is not between 0 and 65535`);
  }
  return {host, port, tls, label: `${tls ? 'https://' : ''}${formatBindAddress(host, port)}`};
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
    const endpoint = formatBindAddress(address.host, address.port);
    if (seen.has(endpoint)) throw new BindError(`"${address.label}" is listed twice`);
    seen.add(endpoint);
    return address;
  });
}

export class AllowFromError extends Error {}

/** One ALLOW_FROM item: an address or a network in CIDR form. */
export interface SourceNetwork {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Parses an ALLOW_FROM list such as `127.0.0.0/8,::1,172.16.0.0/12`; throws AllowFromError naming the bad item. */
export function parseAllowFrom(text: string): SourceNetwork[] {
  const items = text.split(',').map((item) => item.trim());
  if (items.length === 1 && items[0] === '') throw new AllowFromError('the list is empty: give addresses or networks, e.g. 127.0.0.0/8,::1');
  return items.map((item) => {
    const [address, prefixText, ...rest] = item.split('/');
    const version = isIP(address ?? '');
    const prefix = prefixText === undefined ? (version === 6 ? 128 : 32) : Number(prefixText);
    if (version === 0 || rest.length > 0 || (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) || !Number.isInteger(prefix) || prefix > (version === 6 ? 128 : 32)) {
      throw new AllowFromError(`"${item}" is not an IPv4 or IPv6 address or network (such as 10.0.0.0/8 or fd00::/8)`);
    }
    return {address, prefix, family: version === 6 ? 'ipv6' : 'ipv4'};
  });
}

/** Whether a network of the list covers an address. Node's BlockList, loaded only when ALLOW_FROM is set. */
export function sourceMatcher(networks: SourceNetwork[]): (address: string) => boolean {
  const list = new net.BlockList();
  for (const network of networks) list.addSubnet(network.address, network.prefix, network.family);
  return (address) => {
    const version = isIP(address);
    return version !== 0 && list.check(address, version === 6 ? 'ipv6' : 'ipv4');
  };
}
