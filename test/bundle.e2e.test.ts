import {execa} from 'execa';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {dirname, join, resolve} from 'node:path';
import {before, describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import {tempDir} from './helpers.js';
import {useSandbox} from './sandbox.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const {version} = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {version: string};
const {version: nodeVersion} = JSON.parse(readFileSync(join(ROOT, 'scripts/bundle/targets.json'), 'utf8')) as {version: string};
const archive = (arch: string) => `/src/release/dataflux-func-sidecar-${version}-linux-${arch}.tar.gz`;
const KEY = 'bundle-e2e-secret-key-0123456789';
const LIB = '/usr/local/lib/dataflux-func-sidecar';

before(async () => {
  const result = await execa('node', ['--import', 'tsx', 'scripts/bundle.ts'], {cwd: ROOT, reject: false, all: true, stdin: 'ignore'});
  if (result.exitCode !== 0) throw new Error(`npm run bundle failed:\n${result.all}`);
});

// A Debian host with systemd and no Node.js at all, as many of our users' hosts are.
const box = useSandbox('dffs-e2e-bundle', {SANDBOX_NODE: 'none'});

describe('the x64 offline bundle on a host without Node.js', () => {
  it('is a host without Node.js', async () => {
    assert.equal((await box.sh('command -v node || ls /usr/local/bin/node /usr/bin/node')).exitCode, 2);
  });

  it('unpacks to dataflux-func-sidecar/ with the manual\'s files, and its checksums verify', async () => {
    await box.ok(`mkdir -p /opt/usb && tar -xzf ${archive('x64')} -C /opt/usb`);
    const files = await box.ok('cd /opt/usb/dataflux-func-sidecar && LC_ALL=C ls');
    assert.deepEqual(files.split('\n'), ['SHA256SUMS', 'app', 'dataflux-func-sidecar-commands.socket', 'dataflux-func-sidecar-commands@.service', 'dataflux-func-sidecar.service', 'run-sidecar.sh', 'version']);
    assert.equal(await box.ok('cat /opt/usb/dataflux-func-sidecar/version'), version);
    await box.ok('cd /opt/usb/dataflux-func-sidecar && sha256sum --strict --quiet -c SHA256SUMS');
    assert.equal(await box.ok('/opt/usb/dataflux-func-sidecar/app/runtime/bin/node --version'), `v${nodeVersion}`);
    assert.equal(await box.ok('test -e /opt/usb/dataflux-func-sidecar/app/node_modules && echo node_modules || echo bundled'), 'bundled');
  });

  it('refuses to install without root', async () => {
    const result = await box.sh('runuser -u nobody -- /bin/bash /opt/usb/dataflux-func-sidecar/run-sidecar.sh');
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, /must run as root: sudo \/bin\/bash run-sidecar\.sh/);
  });

  it('installs with run-sidecar.sh, prints the manual\'s block, and answers a signed exec', async () => {
    const out = await box.ok(`cd /opt/usb/dataflux-func-sidecar && /bin/bash run-sidecar.sh --bind 127.0.0.1:8099 --secret-key ${KEY}`);
    assert.match(out, new RegExp(`Installed DataFlux Func Sidecar ${version.replace(/\./g, '\\.')}`));
    assert.match(out, new RegExp(`Bind:\\n    127\\.0\\.0\\.1:8099\\nSecret Key:\\n    ${KEY}\\nTo start:\\n    sudo systemctl start dataflux-func-sidecar`));
    assert.equal(await box.ok('systemctl is-active dataflux-func-sidecar'), 'active');
    assert.equal(await box.ok('dffs-ctl exec hostname'), await box.ok('hostname'));
  });

  it('runs the installed commands on the runtime it copied, not on anything of the host', async () => {
    assert.match(await box.ok('cat /usr/local/bin/dffs-ctl /usr/local/bin/dataflux-func-sidecar'), new RegExp(`exec '${LIB}/current/runtime/bin/node'`));
    assert.equal(await box.ok(`${LIB}/current/runtime/bin/node --version`), `v${nodeVersion}`);
    assert.match(await box.ok('dffs-ctl --version'), new RegExp(`dataflux-func-sidecar/${version} linux-x64 node-v${nodeVersion}`));
    const pid = await box.ok('systemctl show -p MainPID --value dataflux-func-sidecar');
    assert.equal(await box.ok(`readlink -f /proc/${pid}/exe`), await box.ok(`readlink -f ${LIB}/current/runtime/bin/node`));
    // Commands start through the bundled dffs-spawn, the command runner.
    const runner = await box.ok('pgrep -u dffs -x dffs-spawn');
    assert.equal(await box.ok(`readlink -f /proc/${runner}/exe`), await box.ok(`readlink -f ${LIB}/current/dist/dffs-spawn`));
    assert.equal(await box.ok('dffs-ctl exec \'echo $PPID\''), runner);
  });

  it('upgrades when run again, keeping the config', async () => {
    const before = {
      release: await box.ok(`readlink ${LIB}/current`),
      config: await box.ok('cat /etc/dataflux-func-sidecar'),
      pid: await box.ok('systemctl show -p MainPID --value dataflux-func-sidecar'),
    };
    const out = await box.ok('/bin/bash /opt/usb/dataflux-func-sidecar/run-sidecar.sh');
    assert.match(out, /Upgraded DataFlux Func Sidecar/);
    assert.match(out, new RegExp(`Secret Key:\\n    ${KEY}\\n`));
    assert.notEqual(await box.ok(`readlink ${LIB}/current`), before.release);
    // The same runtime is linked, not copied again: one inode for both releases.
    assert.equal(await box.ok(`stat -c %i ${before.release}/runtime/bin/node ${LIB}/current/runtime/bin/node | uniq | wc -l`), '1');
    assert.equal(await box.ok('cat /etc/dataflux-func-sidecar'), before.config);
    assert.notEqual(await box.ok('systemctl show -p MainPID --value dataflux-func-sidecar'), before.pid);
    assert.equal(await box.ok('dffs-ctl exec hostname'), await box.ok('hostname'));
  });

  it('serves Prometheus metrics after run-sidecar.sh --metrics: prom-client is in the bundle', async () => {
    assert.match(await box.ok('/bin/bash /opt/usb/dataflux-func-sidecar/run-sidecar.sh --metrics'), /Upgraded DataFlux Func Sidecar/);
    assert.equal(JSON.parse(await box.ok('cat /etc/dataflux-func-sidecar')).METRICS_BIND, '127.0.0.1:9464');
    // The service may still be loading prom-client when install finds it healthy: a few tries.
    const scrape = await box.ok(
      `${LIB}/current/runtime/bin/node -e 'const get = (tries) => fetch("http://127.0.0.1:9464/metrics").then(async (res) => console.log(res.status, await res.text()), (error) => (tries > 0 ? new Promise((wait) => setTimeout(wait, 200)).then(() => get(tries - 1)) : Promise.reject(error))); get(25)'`,
    );
    assert.match(scrape, /^200 /);
    assert.match(scrape, new RegExp(`^dffs_build_info\\{version="${version.replace(/\./g, '\\.')}",node_version="v${nodeVersion.replace(/\./g, '\\.')}"\\} 1$`, 'm'));
    assert.match(scrape, /^dffs_commands_total\{result="succeeded"\} \d+$/m);
  });

  it('refuses a damaged copy and leaves the running service alone', async () => {
    const release = await box.ok(`readlink ${LIB}/current`);
    await box.ok('cp -a /opt/usb/dataflux-func-sidecar /opt/damaged && echo "// changed" >> /opt/damaged/app/dist/commands/serve.js');
    const result = await box.sh('/bin/bash /opt/damaged/run-sidecar.sh');
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, /do not match SHA256SUMS: copy the whole dataflux-func-sidecar directory again/);
    assert.equal(await box.ok(`readlink ${LIB}/current`), release);
    assert.equal(await box.ok('systemctl is-active dataflux-func-sidecar'), 'active');
  });

  it('refuses the arm64 bundle on this x86_64 host', async () => {
    await box.ok(`mkdir -p /opt/arm && tar -xzf ${archive('arm64')} -C /opt/arm`);
    const result = await box.sh('/bin/bash /opt/arm/dataflux-func-sidecar/run-sidecar.sh');
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, /this bundle is for aarch64, but this host is x86_64/);
  });

  it('uninstalls completely', async () => {
    await box.ok('dffs-ctl uninstall --purge');
    assert.equal(await box.ok(`test -e ${LIB} || test -e /usr/local/bin/dffs-ctl || getent passwd dffs >/dev/null && echo left || echo gone`), 'gone');
  });
});

describe('the arm64 offline bundle', () => {
  const directory = tempDir();
  const bundle = join(directory, 'dataflux-func-sidecar');
  before(async () => {
    await execa('tar', ['-xzf', join(ROOT, archive('arm64').replace('/src/', '')), '-C', directory]);
  });

  it('runs its Node.js runtime and dffs-ctl --version under qemu-aarch64-static', async () => {
    const qemu = ['-L', '/usr/aarch64-linux-gnu'];
    const available = await execa('sh', ['-c', 'command -v qemu-aarch64-static && test -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1'], {reject: false});
    assert.equal(available.exitCode, 0, 'needs qemu-aarch64-static and an aarch64 C library: apt-get install qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross (.ci/run does)');
    await execa('sha256sum', ['--strict', '--quiet', '-c', 'SHA256SUMS'], {cwd: bundle});
    const node = join(bundle, 'app/runtime/bin/node');
    assert.match((await execa('readelf', ['-h', node])).stdout, /Machine:\s+AArch64/);
    assert.equal((await execa('qemu-aarch64-static', [...qemu, node, '--version'])).stdout, `v${nodeVersion}`);
    const cli = await execa('qemu-aarch64-static', [...qemu, node, join(bundle, 'app/bin/run.js'), '--version']);
    assert.match(cli.stdout, new RegExp(`dataflux-func-sidecar/${version} linux-arm64 node-v${nodeVersion}`));
  });

  it('has a spawn helper for aarch64 that starts a command and relays its output', async () => {
    const payload = Buffer.from('1024\0\0echo hi\0\0PATH=/bin\0');
    const frame = Buffer.concat([Buffer.from([5 + payload.length, 0, 0, 0]), Buffer.from('S'), Buffer.from([1, 0, 0, 0]), payload]);
    // The helper exits when its input ends, after the command is done.
    const helper = await execa('sh', ['-c', `(cat; sleep 1) | qemu-aarch64-static ${join(bundle, 'app/dist/dffs-spawn')}`], {input: frame, encoding: 'buffer'});
    const output = Buffer.from(helper.stdout);
    const frames: Record<string, Buffer> = {};
    for (let offset = 0; offset < output.length; ) {
      const length = output.readUInt32LE(offset);
      frames[String.fromCharCode(output[offset + 4])] = output.subarray(offset + 9, offset + 4 + length);
      offset += 4 + length;
    }
    assert.deepEqual(Object.keys(frames).sort(), ['C', 'O', 'P', 'X']);
    assert.equal(frames.O.toString(), 'hi\n');
    assert.equal(frames.X.readInt32LE(0), 0);
  });

  it('keeps Ink and React out of what the bundled serve loads at start', () => {
    const loaded = new Set<string>();
    const visit = (file: string): void => {
      if (loaded.has(file)) return;
      loaded.add(file);
      // Static imports only: the dashboard comes in through import("./run-….js").
      for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/\bimport\s*(?:[\w$*{},\s]+from\s*)?["'](\.[^"']+)["']/g)) {
        visit(resolve(dirname(file), specifier));
      }
    };
    visit(join(bundle, 'app/dist/commands/serve.js'));
    assert.ok(loaded.size > 2, 'the walk follows the shared chunks');
    assert.deepEqual([...loaded].filter((file) => /yoga/i.test(readFileSync(file, 'utf8'))), []);
  });
});
