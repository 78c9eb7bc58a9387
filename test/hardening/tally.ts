import {mkdirSync, writeFileSync} from 'node:fs';
import {basename, join} from 'node:path';
import {after} from 'node:test';
import {fileURLToPath} from 'node:url';

/** What a hardening file did, summed over all files by summary.ts. */
export interface Tally {
  inputsTried: number;
  faultsInjected: number;
  requestsSent: number;
  callbacksExpected: number;
  callbacksDelivered: number;
  crashes: number;
  lostResults: number;
}

export const TALLY_DIR = fileURLToPath(new URL('../../.cache/hardening/', import.meta.url));

/** The tally of the calling test file, written when the file ends (each file runs in its own process). */
export function useTally(testFile: string): Tally {
  const tally: Tally = {inputsTried: 0, faultsInjected: 0, requestsSent: 0, callbacksExpected: 0, callbacksDelivered: 0, crashes: 0, lostResults: 0};
  after(() => {
    mkdirSync(TALLY_DIR, {recursive: true});
    writeFileSync(join(TALLY_DIR, `${basename(fileURLToPath(testFile))}.json`), JSON.stringify(tally));
  });
  return tally;
}
