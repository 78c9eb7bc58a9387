import assert from 'node:assert/strict';
import {copyFileSync, existsSync, readdirSync, readFileSync, statSync} from 'node:fs';
import {dirname, join, relative, resolve} from 'node:path';
import {describe, it} from 'node:test';
import {execa} from 'execa';
import {tempDir} from './helpers.js';

const ROOT = new URL('..', import.meta.url).pathname;
const README = join(ROOT, 'README.md');
const DOCS = join(ROOT, 'docs');
const COMMANDS_DOC = join(DOCS, 'commands.md');
const README_MAX_LINES = 250;

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {scripts: Record<string, string>};

/** README.md and every page of docs/. */
function markdownFiles(): string[] {
  const docs = readdirSync(DOCS)
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join(DOCS, name));
  return [README, ...docs];
}

const shown = (file: string) => relative(ROOT, file);

interface Parsed {
  /** Lines outside fenced code blocks, with inline code spans blanked out. */
  prose: {line: number; text: string}[];
  /** Each fenced block's line and each inline code span, one by one. */
  code: string[];
  headings: string[];
}

const CODE_SPAN = /(`+)(.+?)\1/g;

function parse(file: string): Parsed {
  const prose: Parsed['prose'] = [];
  const code: string[] = [];
  const headings: string[] = [];
  let fence: string | undefined;
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, index) => {
      const marker = /^\s*(`{3,}|~{3,})/.exec(text)?.[1];
      if (fence) {
        if (marker && marker[0] === fence[0] && marker.length >= fence.length && text.trim() === marker) fence = undefined;
        else code.push(text);
        return;
      }
      if (marker) {
        fence = marker;
        return;
      }
      for (const match of text.matchAll(CODE_SPAN)) code.push(match[2]);
      const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(text);
      if (heading) headings.push(heading[1]);
      prose.push({line: index + 1, text: text.replace(CODE_SPAN, (span) => ' '.repeat(span.length))});
    });
  return {prose, code, headings};
}

/** GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*~]|<[^>]+>/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const heading of parse(file).headings) {
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  return result;
}

/** [text](target) and ![alt](target) outside code, with an optional "title". */
const LINK = /!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g;

function brokenLinks(file: string): string[] {
  const broken: string[] = [];
  for (const {line, text} of parse(file).prose) {
    for (const [, target] of text.matchAll(LINK)) {
      const where = `${shown(file)}:${line}: ${target}`;
      if (target === '') {
        broken.push(`${where} (empty link)`);
        continue;
      }
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) {
        let url: URL | undefined;
        try {
          url = new URL(target);
        } catch {
          // reported below
        }
        if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname.includes('.')) broken.push(`${where} (not an http(s) URL with a host name)`);
        continue;
      }
      const hash = target.indexOf('#');
      const path = decodeURIComponent(hash === -1 ? target : target.slice(0, hash));
      const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
      const resolved = path === '' ? file : resolve(dirname(file), path);
      if (!existsSync(resolved)) {
        broken.push(`${where} (no such file: ${relative(ROOT, resolved)})`);
        continue;
      }
      if (anchor === undefined) continue;
      if (!resolved.endsWith('.md') || statSync(resolved).isDirectory()) {
        broken.push(`${where} (an anchor into a file that is not markdown)`);
        continue;
      }
      if (!anchors(resolved).has(anchor)) broken.push(`${where} (no heading #${anchor} in ${relative(ROOT, resolved)})`);
    }
  }
  return broken;
}

/** The command ids of the built CLI (colon-separated), from the manifest `npm run build` writes. */
function commandIds(): Set<string> {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>};
  return new Set(Object.keys(manifest.commands));
}

describe('docs', () => {
  it('has the command reference as `npm run docs:commands` writes it (oclif readme)', async () => {
    const script = pkg.scripts['docs:commands'];
    assert.ok(script, 'package.json has a docs:commands script');
    const generator = /(?:COLUMNS=(\d+)\s+)?oclif readme ([^>&|;]*)/.exec(script);
    assert.ok(generator, `docs:commands runs oclif readme: ${script}`);
    assert.ok(existsSync(join(ROOT, 'dist', 'commands')), 'dist/commands is missing: run npm run build first');
    const args = generator[2].trim().split(/\s+/);
    const pathFlag = args.indexOf('--readme-path');
    assert.ok(pathFlag !== -1 && args[pathFlag + 1] === 'docs/commands.md', 'docs:commands writes docs/commands.md with --readme-path');
    const copy = join(tempDir(), 'commands.md');
    copyFileSync(COMMANDS_DOC, copy);
    args[pathFlag + 1] = copy;
    const oclif = join(ROOT, 'node_modules', '.bin', 'oclif');
    const run = await execa(oclif, ['readme', ...args], {
      cwd: ROOT,
      reject: false,
      env: {COLUMNS: generator[1] ?? '120', NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true'},
    });
    assert.equal(run.exitCode, 0, `oclif readme failed: ${run.stderr}`);
    const expected = readFileSync(copy, 'utf8');
    assert.ok(
      readFileSync(COMMANDS_DOC, 'utf8') === expected,
      'docs/commands.md is not what the commands\' help says now: run `npm run docs:commands` and commit docs/commands.md',
    );
  });

  it('has a command reference with every command, and the README links it', () => {
    const doc = readFileSync(COMMANDS_DOC, 'utf8');
    for (const id of commandIds()) assert.ok(doc.includes(`## \`dffs-ctl ${id.split(':').join(' ')}`), `docs/commands.md has dffs-ctl ${id.split(':').join(' ')}`);
    assert.match(readFileSync(README, 'utf8'), /\]\(docs\/commands\.md\)/);
  });

  it('keeps the README short, and links every page of docs/ from it', () => {
    const readme = readFileSync(README, 'utf8');
    const lines = readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0);
    assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines, more than ${README_MAX_LINES}: move depth to docs/`);
    const opening = readme.split('\n').slice(0, 8).join('\n');
    assert.ok(opening.includes('npm ci && npm start') && opening.includes('npm test'), 'the README opens with `npm ci && npm start` and `npm test`');
    for (const page of markdownFiles().slice(1)) {
      const name = relative(ROOT, page);
      assert.ok(readme.includes(`](${name})`) || readme.includes(`](${name}#`), `README.md links ${name}`);
    }
  });

  it('has every relative link and anchor of README.md and docs/ resolve', () => {
    const broken = markdownFiles().flatMap(brokenLinks);
    assert.deepEqual(broken, [], `broken links:\n${broken.join('\n')}`);
  });

  it('names only npm scripts that exist, in the docs, .ci/run and scripts/test.sh', () => {
    const files = [...markdownFiles(), join(ROOT, '.ci', 'run'), join(ROOT, 'scripts', 'test.sh')];
    const unknown: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const [, name] of text.matchAll(/\bnpm run ([\w:.-]*\w)/g)) if (!pkg.scripts[name]) unknown.push(`${shown(file)}: npm run ${name}`);
      for (const [, name] of text.matchAll(/\bnpm (start|test)\b/g)) if (!pkg.scripts[name]) unknown.push(`${shown(file)}: npm ${name}`);
    }
    assert.deepEqual(unknown, [], `scripts that package.json does not have:\n${unknown.join('\n')}`);
  });

  it('names only dffs-ctl commands that exist, in the code of README.md and docs/', () => {
    const ids = commandIds();
    const unknown: string[] = [];
    for (const file of markdownFiles()) {
      for (const code of parse(file).code) {
        for (const [, first, second] of code.matchAll(/(?:^|[\s($`'"])dffs-ctl[ \t]+([a-z][\w-]*)(?:[ \t]+([a-z][\w-]*))?/g)) {
          if (second && ids.has(`${first}:${second}`)) continue;
          if (ids.has(first)) continue;
          unknown.push(`${shown(file)}: dffs-ctl ${first}${second ? ` ${second}` : ''}`);
        }
      }
    }
    assert.deepEqual([...new Set(unknown)], [], `commands that the CLI does not have:\n${[...new Set(unknown)].join('\n')}`);
  });

  it('keeps only the benchmark results that a doc links to', () => {
    const linked = new Set(
      markdownFiles().flatMap((file) =>
        parse(file).prose.flatMap(({text}) => [...text.matchAll(LINK)].map(([, target]) => resolve(dirname(file), target.split('#')[0]))),
      ),
    );
    const results = join(ROOT, 'bench', 'results');
    const unlinked = readdirSync(results)
      .filter((name) => name.endsWith('.md'))
      .filter((name) => !linked.has(join(results, name)));
    assert.deepEqual(unlinked, [], 'every bench/results file is linked from docs/performance.md (add it to its history table, or git rm it)');
  });
});
