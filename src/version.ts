import {readFileSync} from 'node:fs';

interface PackageInfo {
  version: string;
  releaseDate: string;
}

// package.json sits one level above both src/ and dist/, so this resolves in either.
const packageInfo = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as PackageInfo;

export const VERSION = packageInfo.version;
export const RELEASE_DATE = packageInfo.releaseDate;

export function greeting(): string {
  return `Welcome to DataFlux Func Sidecar\n* Version: ${VERSION}\n* Release Date: ${RELEASE_DATE}\n`;
}
