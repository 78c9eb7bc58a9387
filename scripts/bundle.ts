/**
 * `npm run bundle`: the offline release bundles of the manual's section 2.1, one per architecture,
 * in release/. Each holds the application bundled by esbuild (no node_modules), the pinned Node.js
 * runtime from the npm registry's node-linux-<arch> package, run-sidecar.sh, the unit file, a
 * version file and SHA256SUMS. The runtimes are the only downloads, checked against pinned hashes.
 */
import {build} from 'esbuild';
import {execa} from 'execa';
import {createHash} from 'node:crypto';
import {chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {join, relative} from 'node:path';
import {fileURLToPath} from 'node:url';
import {stopTimeoutSeconds} from '../src/admin/install.js';
import {renderUnits} from '../src/admin/unit.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CACHE = join(ROOT, '.cache', 'node-runtimes');
const OUT = join(ROOT, 'release');
const BUNDLE_NAME = 'dataflux-func-sidecar';

interface Runtime {
  package: string;
  machine: string;
  integrity: string;
  /** The C compiler that builds dffs-spawn (static, so any glibc will do) for this architecture. */
  cc: string;
}

const pins = JSON.parse(readFileSync(join(ROOT, 'scripts/bundle/targets.json'), 'utf8')) as {version: string; runtimes: Record<string, Runtime>};
const packageJson = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown> & {version: string};

function integrityOf(file: string): string {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
}

/** The runtime's npm tarball, fetched once into .cache/ and checked against the pinned hash. */
async function runtimeTarball(runtime: Runtime): Promise<string> {
  const file = join(CACHE, `${runtime.package}-${pins.version}.tgz`);
  if (!existsSync(file) || integrityOf(file) !== runtime.integrity) {
    mkdirSync(CACHE, {recursive: true});
    console.log(`bundle: fetching ${runtime.package}@${pins.version} from the npm registry`);
    await execa('npm', ['pack', `${runtime.package}@${pins.version}`, '--pack-destination', CACHE, '--silent'], {stdin: 'ignore'});
  }
  const actual = integrityOf(file);
  if (actual !== runtime.integrity) throw new Error(`${file} has integrity ${actual}, not the pinned ${runtime.integrity}`);
  return file;
}

function commandEntries(directory = join(ROOT, 'src/commands')): string[] {
  return readdirSync(directory, {withFileTypes: true}).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? commandEntries(path) : entry.name.endsWith('.ts') ? [path] : [];
  });
}

/**
 * The application as ES modules: bin/run.js and one file per command at the paths the oclif
 * manifest names, sharing chunks, so a command loads only what it uses (serve never loads Ink).
 */
async function bundleApplication(appDir: string): Promise<void> {
  const entryPoints: Record<string, string> = {'bin/run': join(ROOT, 'bin/run.js')};
  for (const path of commandEntries()) {
    entryPoints[`dist/${relative(join(ROOT, 'src'), path).replace(/\.ts$/, '')}`] = path;
  }
  await build({
    entryPoints,
    outdir: appDir,
    chunkNames: 'dist/chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20.11',
    minifySyntax: true,
    minifyWhitespace: true,
    legalComments: 'none',
    // React, Ink and oclif take their production paths: no devtools, no TypeScript sources.
    define: {'process.env.NODE_ENV': '"production"'},
    external: ['react-devtools-core', 'typescript'],
    // CommonJS packages (oclif) call require() for Node's built-in modules.
    banner: {js: "import {createRequire as __bundleCreateRequire} from 'node:module';const require=__bundleCreateRequire(import.meta.url);"},
    logLevel: 'warning',
    plugins: [
      {
        // bin/run.js imports the compiled ../dist/daemon/serve-cli.js: bundle its source like the rest, once.
        name: 'dist-to-src',
        setup(on) {
          on.onResolve({filter: /^\.\.\/dist\//}, (args) => ({path: join(ROOT, 'src', args.path.slice('../dist/'.length).replace(/\.js$/, '.ts'))}));
        },
      },
    ],
  });
  const {name, version, releaseDate, description, license, type, engines, bin, oclif} = packageJson;
  writeFileSync(join(appDir, 'package.json'), `${JSON.stringify({name, version, releaseDate, description, license, type, engines, bin, oclif, nodeRuntime: pins.version}, null, 2)}\n`);
  copyFileSync(join(ROOT, 'oclif.manifest.json'), join(appDir, 'oclif.manifest.json'));
  if (existsSync(join(ROOT, 'LICENSE'))) copyFileSync(join(ROOT, 'LICENSE'), join(appDir, 'LICENSE'));
}

function filesUnder(directory: string): string[] {
  return readdirSync(directory, {withFileTypes: true}).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

/** SHA256SUMS in the format `sha256sum -c` reads, over every file but itself. */
function writeChecksums(bundleDir: string): void {
  const lines = filesUnder(bundleDir)
    .map((path) => relative(bundleDir, path))
    .sort()
    .map((path) => `${createHash('sha256').update(readFileSync(join(bundleDir, path))).digest('hex')}  ${path}`);
  writeFileSync(join(bundleDir, 'SHA256SUMS'), `${lines.join('\n')}\n`);
}

async function bundleFor(arch: string, runtime: Runtime, appDir: string): Promise<string> {
  const stage = join(OUT, `stage-${arch}`);
  const bundleDir = join(stage, BUNDLE_NAME);
  rmSync(stage, {recursive: true, force: true});
  mkdirSync(bundleDir, {recursive: true});
  cpSync(appDir, join(bundleDir, 'app'), {recursive: true});

  const runtimeDir = join(bundleDir, 'app/runtime');
  mkdirSync(runtimeDir, {recursive: true});
  await execa('tar', ['-xzf', await runtimeTarball(runtime), '-C', runtimeDir, '--strip-components=1', 'package/bin/node', 'package/LICENSE']);
  chmodSync(join(runtimeDir, 'bin/node'), 0o755);

  if ((await execa('sh', ['-c', `command -v ${runtime.cc}`], {reject: false})).exitCode !== 0) {
    throw new Error(`${runtime.cc} is missing: it builds the spawn helper for ${arch} (apt-get install ${runtime.cc === 'gcc' ? 'gcc' : 'gcc-aarch64-linux-gnu'})`);
  }
  // Static, so any glibc will do.
  await execa(join(ROOT, 'scripts/build-native.sh'), [join(bundleDir, 'app/dist'), runtime.cc, '-static', '-s']);
  const script = readFileSync(join(ROOT, 'scripts/bundle/run-sidecar.sh'), 'utf8').replace('@MACHINE@', runtime.machine);
  writeFileSync(join(bundleDir, 'run-sidecar.sh'), script, {mode: 0o755});
  const units = renderUnits({allowSetuid: false, stopTimeoutSeconds: stopTimeoutSeconds({})});
  writeFileSync(join(bundleDir, `${BUNDLE_NAME}.service`), units.daemon);
  writeFileSync(join(bundleDir, `${BUNDLE_NAME}-commands.socket`), units.runnerSocket);
  writeFileSync(join(bundleDir, `${BUNDLE_NAME}-commands@.service`), units.runner);
  writeFileSync(join(bundleDir, 'version'), `${packageJson.version}\n`);
  writeChecksums(bundleDir);

  // Reproducible: fixed owner, order and times, and no name or time in the gzip header.
  const archive = join(OUT, `${BUNDLE_NAME}-${packageJson.version}-linux-${arch}.tar.gz`);
  const mtime = `@${Math.floor(Date.parse(`${String(packageJson.releaseDate).replace(' ', 'T')}Z`) / 1000)}`;
  await execa('bash', ['-c', 'tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$1" -C "$2" -cf - "$3" | gzip -n > "$4"', 'tar', mtime, stage, BUNDLE_NAME, archive]);
  rmSync(stage, {recursive: true, force: true});
  return archive;
}

const onlyArch = process.argv[2];
const arches = Object.keys(pins.runtimes).filter((arch) => onlyArch === undefined || arch === onlyArch);
if (arches.length === 0) throw new Error(`unknown architecture ${onlyArch}: choose one of ${Object.keys(pins.runtimes).join(', ')}`);
if (!existsSync(join(ROOT, 'oclif.manifest.json'))) throw new Error('oclif.manifest.json is missing: run npm run build first');
mkdirSync(OUT, {recursive: true});
const appDir = join(OUT, 'app');
rmSync(appDir, {recursive: true, force: true});
await bundleApplication(appDir);
for (const arch of arches) {
  const archive = await bundleFor(arch, pins.runtimes[arch], appDir);
  console.log(`bundle: ${relative(ROOT, archive)} (${(statSync(archive).size / 2 ** 20).toFixed(1)} MiB)`);
}
rmSync(appDir, {recursive: true, force: true});
