import assert from 'node:assert/strict';
import {existsSync, readdirSync, readFileSync} from 'node:fs';
import {dirname, join, normalize, relative} from 'node:path';
import {describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'src');
/** "About 350 lines": a file past this is split by what its parts do. */
const MAX_LINES = 360;

function sources(directory = SRC): string[] {
  return readdirSync(directory, {withFileTypes: true}).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return sources(path);
    return /\.tsx?$/.test(entry.name) ? [path] : [];
  });
}

/** The modules of src/ a file imports, types included: a cycle of types is a cycle of dependencies too. */
function imports(file: string): string[] {
  const found: string[] = [];
  for (const match of readFileSync(file, 'utf8').matchAll(/^\s*(?:import|export)\b[^'\n]*?from '(\.{1,2}\/[^']+)'/gm)) {
    const base = normalize(join(dirname(file), match[1].replace(/\.js$/, '')));
    const target = [`${base}.ts`, `${base}.tsx`].find((path) => existsSync(path));
    if (target) found.push(target);
  }
  return found;
}

describe('the source tree', () => {
  const files = sources();

  it(`has no file over ${MAX_LINES} lines`, () => {
    const lineCount = (text: string) => text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    const long = files.map((file) => [relative(ROOT, file), lineCount(readFileSync(file, 'utf8'))] as const).filter(([, lines]) => lines > MAX_LINES);
    assert.deepEqual(long, [], 'split these by what their parts do');
  });

  it('has no import cycle', () => {
    const graph = new Map(files.map((file) => [file, imports(file)]));
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(file)), file].map((entry) => relative(ROOT, entry)).join(' -> '));
        return;
      }
      state.set(file, 'visiting');
      for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of files) visit(file, []);
    assert.deepEqual(cycles, [], 'shared types go where both sides may import them (src/protocol/)');
  });

  it('keeps src/commands/ to oclif commands, and no module at the root of src/', () => {
    const commands = files.filter((file) => file.startsWith(join(SRC, 'commands')));
    for (const file of commands) assert.match(readFileSync(file, 'utf8'), /export default class \w+ extends (?:Command|JsonCommand)\b/, relative(ROOT, file));
    assert.deepEqual(files.filter((file) => dirname(file) === SRC).map((file) => relative(ROOT, file)), []);
  });
});
