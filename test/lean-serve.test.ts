import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {dirname, join, resolve} from 'node:path';
import {it} from 'node:test';
import {fileURLToPath} from 'node:url';

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));

/** Everything a module loads at start: static imports, followed through the built files. */
function staticImports(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const source = readFileSync(file, 'utf8');
  for (const [, specifier] of source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]/gm)) {
    if (specifier.startsWith('.')) staticImports(resolve(dirname(file), specifier), seen);
    else seen.add(specifier);
  }
  return seen;
}

it('serve loads neither Ink nor React unless it draws the dashboard', () => {
  const loaded = [...staticImports(join(DIST, 'commands', 'serve.js'))];
  assert.ok(loaded.some((entry) => entry.endsWith('daemon.js')), 'the walk follows the daemon');
  assert.deepEqual(loaded.filter((entry) => /^(ink|react)(\/|$)|\/ui\//.test(entry)), []);
  assert.match(readFileSync(join(DIST, 'daemon', 'serve.js'), 'utf8'), /await import\('\.\.\/ui\/run\.js'\)/);
});

it('the daemon\'s own start (bin/run.js serve) loads neither oclif nor Ink nor React', () => {
  const loaded = [...staticImports(join(DIST, 'daemon', 'serve-cli.js'))];
  assert.ok(loaded.some((entry) => entry.endsWith('daemon.js')), 'the walk follows the daemon');
  assert.deepEqual(loaded.filter((entry) => /^(@oclif\/core|ink|react|execa|conf)(\/|$)|\/ui\//.test(entry)), []);
  assert.match(readFileSync(join(DIST, '..', 'bin', 'run.js'), 'utf8'), /await import\('\.\.\/dist\/daemon\/serve-cli\.js'\)\)\.leanServe\(/);
});

it('serve loads prom-client only when METRICS_BIND is set', () => {
  for (const entry of [join('daemon', 'serve-cli.js'), join('commands', 'serve.js')]) {
    const loaded = [...staticImports(join(DIST, entry))];
    assert.ok(loaded.some((file) => file.endsWith(join('daemon', 'metrics.js'))), `the walk from ${entry} follows the metrics endpoint`);
    assert.deepEqual(loaded.filter((file) => /^(prom-client|@opentelemetry|tdigest|bintrees)(\/|$)/.test(file)), []);
  }
  assert.match(readFileSync(join(DIST, 'daemon', 'metrics.js'), 'utf8'), /await import\('prom-client'\)/);
});

it('the daemon\'s modules take fs, util, crypto, net and http from node-builtins, not by import', () => {
  const loaded = [...staticImports(join(DIST, 'daemon', 'serve-cli.js'))];
  assert.ok(loaded.some((entry) => entry.endsWith('node-builtins.js')));
  assert.deepEqual(loaded.filter((entry) => /^node:(fs|fs\/promises|util|crypto|net|http|https)$/.test(entry)), []);
});
