import {net} from '../common/node-builtins.js';

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
    // A zone (fe80::1%eth0) would be ignored by the check: refused rather than half-read.
    const version = address?.includes('%') ? 0 : isIP(address ?? '');
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

type Interfaces = ReturnType<typeof import('node:os').networkInterfaces>;

/** Loopback, and the networks Docker gives its bridges by default (172.17.0.0/16 to 172.31.0.0/16). */
const BASE_ALLOW_FROM = '127.0.0.0/8,::1,172.16.0.0/12';

/** The network, in CIDR form, of an interface address. */
function networkOf(address: string, cidr: string, family: 'IPv4' | 'IPv6'): string | undefined {
  const prefix = Number(cidr.split('/')[1]);
  if (family !== 'IPv4' || !Number.isInteger(prefix)) return family === 'IPv6' ? cidr : undefined;
  const value = address.split('.').reduce((total, octet) => total * 256 + Number(octet), 0);
  const network = prefix === 0 ? 0 : Math.floor(value / 2 ** (32 - prefix)) * 2 ** (32 - prefix);
  return `${[24, 16, 8, 0].map((shift) => Math.floor(network / 2 ** shift) % 256).join('.')}/${prefix}`;
}

/**
 * The ALLOW_FROM install writes: loopback, Docker's default bridge networks, and the networks of
 * the Docker bridges on this host (docker0, br-*) outside them, such as a compose network in 192.168/16.
 */
export function defaultAllowFrom(interfaces: Interfaces): string {
  const allows = sourceMatcher(parseAllowFrom(BASE_ALLOW_FROM));
  const extra = Object.entries(interfaces)
    .filter(([name]) => name === 'docker0' || name.startsWith('br-'))
    .flatMap(([, addresses]) => addresses ?? [])
    .filter((info) => info.cidr && !allows(info.address))
    .flatMap((info) => networkOf(info.address, info.cidr as string, info.family) ?? []);
  return [BASE_ALLOW_FROM, ...new Set(extra)].join(',');
}

/**
 * The networks to add to ALLOW_FROM so that clients can reach the given bind addresses: for each
 * address of an interface here that the list does not cover, that interface's network.
 */
export function allowFromAdditions(allowFrom: string, binds: BindAddress[], interfaces: Interfaces): string[] {
  const allows = sourceMatcher(parseAllowFrom(allowFrom));
  const additions = new Set<string>();
  for (const bind of binds) {
    if (allows(bind.host)) continue;
    for (const info of Object.values(interfaces).flatMap((addresses) => addresses ?? [])) {
      const network = info.address === bind.host && info.cidr ? networkOf(info.address, info.cidr, info.family) : undefined;
      if (network) additions.add(network);
    }
  }
  return [...additions];
}
