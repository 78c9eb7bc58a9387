/** Prints the sums of the hardening files' tallies; fails on a crash, a lost result, or no tallies. */
import {existsSync, readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {TALLY_DIR, type Tally} from './tally.js';

const files = existsSync(TALLY_DIR) ? readdirSync(TALLY_DIR).filter((name) => name.endsWith('.json')) : [];
if (files.length === 0) {
  console.error(`hardening: no tallies in ${TALLY_DIR}: did the tests run?`);
  process.exit(1);
}
const total = files
  .map((name) => JSON.parse(readFileSync(join(TALLY_DIR, name), 'utf8')) as Tally)
  .reduce((sum, tally) => Object.fromEntries(Object.entries(sum).map(([key, value]) => [key, value + tally[key as keyof Tally]])) as unknown as Tally);
const rows: [string, number][] = [
  ['inputs tried', total.inputsTried],
  ['faults injected', total.faultsInjected],
  ['requests sent', total.requestsSent],
  ['callbacks expected', total.callbacksExpected],
  ['callbacks delivered', total.callbacksDelivered],
  ['crashes', total.crashes],
  ['lost results', total.lostResults],
];
console.log(`hardening summary (${files.length} files):`);
for (const [label, value] of rows) console.log(`  ${label.padEnd(20)} ${value.toLocaleString('en-US')}`);
if (total.crashes > 0 || total.lostResults > 0 || total.callbacksDelivered !== total.callbacksExpected) process.exit(1);
