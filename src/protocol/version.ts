import {join} from 'node:path';
import {fs} from '../common/node-builtins.js';
import {PACKAGE_ROOT} from '../common/package-root.js';

const {readFileSync} = fs;

interface PackageInfo {
  version: string;
  releaseDate: string;
}

const packageInfo = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as PackageInfo;

export const VERSION = packageInfo.version;
export const RELEASE_DATE = packageInfo.releaseDate;

export function greeting(): string {
  return `Welcome to DataFlux Func Sidecar\n* Version: ${VERSION}\n* Release Date: ${RELEASE_DATE}\n`;
}
