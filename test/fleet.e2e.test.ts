// The Ansible playbook (deploy/ansible/site.yml) run from this machine over ssh against three
// sandbox hosts on a private bridge, none with Node.js: install, a run that changes nothing, an
// upgrade that stops at a host that cannot come up, rotation with a grace, and uninstall.
import {execa} from 'execa';
import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {after, before, describe, it, type TestContext} from 'node:test';
import {fileURLToPath} from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SANDBOX = fileURLToPath(new URL('../../shared/systemd-sandbox/sandbox', import.meta.url));
const PLAYBOOK = join(ROOT, 'deploy/ansible/site.yml');
const {version: OLD_VERSION} = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {version: string};
// Same code, a higher version: what the installer and status read from the bundle's package.json.
const NEW_VERSION = OLD_VERSION.replace(/(\d+)$/, (patch) => String(Number(patch) + 1));
const PORT = 8099;
const LIB = '/usr/local/lib/dataflux-func-sidecar';
const HOSTS = ['a', 'b', 'c'].map((letter) => ({name: `fleet-${letter}`, container: `dffs-e2e-fleet-${letter}`, address: ''}));
// The host whose port is taken during the upgrade: the second of the batches, so one comes before it and one after.
const BLOCKED = HOSTS[1];
// Long enough for the rest of the rotate run and the checks with the old keys on a busy CI machine.
const GRACE_SECONDS = 30;

const work = mkdtempSync(join(tmpdir(), 'dffs-fleet-'));
const paths = {
  empty: join(work, 'empty'),
  sshKey: join(work, 'ssh', 'id'),
  controlSockets: join(work, 'ssh', 'control'),
  inventory: join(work, 'inventory.yml'),
  sheet: join(work, 'connectors.json'),
  oldBundle: join(work, 'old', `dataflux-func-sidecar-${OLD_VERSION}-linux-x64.tar.gz`),
  newBundle: join(work, 'new', `dataflux-func-sidecar-${NEW_VERSION}-linux-x64.tar.gz`),
  newTree: join(work, 'new-tree'),
};

interface Recap {
  ok: number;
  changed: number;
  unreachable: number;
  failed: number;
  skipped: number;
  rescued: number;
  ignored: number;
}

interface PlaybookRun {
  exitCode: number;
  output: string;
  recap: Record<string, Recap>;
  recapLines: string[];
  seconds: number;
}

const sandbox = (args: string[], options: {input?: string; env?: Record<string, string>} = {}) =>
  execa(SANDBOX, args, {reject: false, all: true, stdin: options.input === undefined ? 'ignore' : undefined, input: options.input, env: options.env});

/** Runs a bash script as root on a host; fails the test on a non-zero exit. */
async function onHost(host: (typeof HOSTS)[number], script: string, input?: string): Promise<string> {
  const result = await sandbox(['exec', host.container, 'bash', '-c', script], {input});
  if (result.exitCode !== 0) throw new Error(`on ${host.name}: ${script}\nexit ${result.exitCode}\n${result.all}`);
  return result.stdout;
}

/** The newest change to what npm run bundle reads, to tell whether release/ holds the current build. */
function newestInput(path = ROOT, names = ['package.json', 'package-lock.json', 'oclif.manifest.json', 'bin', 'src', 'native', 'scripts/bundle.ts', 'scripts/bundle', 'scripts/build-native.sh']): number {
  let newest = 0;
  for (const name of names) {
    const entry = join(path, name);
    if (!existsSync(entry)) continue;
    const info = statSync(entry);
    newest = Math.max(newest, info.isDirectory() ? newestInput(entry, readdirSync(entry)) : info.mtimeMs);
  }
  return newest;
}

/** The x64 bundle of this checkout: release/'s if it is newer than every input, else built now. */
async function currentBundle(): Promise<string> {
  const archive = join(ROOT, 'release', `dataflux-func-sidecar-${OLD_VERSION}-linux-x64.tar.gz`);
  if (existsSync(archive) && statSync(archive).mtimeMs > newestInput()) return archive;
  const build = await execa('node', ['--import', 'tsx', 'scripts/bundle.ts', 'x64'], {cwd: ROOT, reject: false, all: true, stdin: 'ignore'});
  if (build.exitCode !== 0) throw new Error(`npm run bundle (x64) failed:\n${build.all}`);
  return archive;
}

/** The same bundle under a higher version: package.json, the oclif manifest and version changed, SHA256SUMS to match. */
async function makeNewerBundle(): Promise<void> {
  mkdirSync(paths.newTree, {recursive: true});
  await execa('tar', ['-xzf', paths.oldBundle, '-C', paths.newTree]);
  const bundle = join(paths.newTree, 'dataflux-func-sidecar');
  for (const file of ['app/package.json', 'app/oclif.manifest.json']) {
    const json = JSON.parse(readFileSync(join(bundle, file), 'utf8')) as {version: string};
    assert.equal(json.version, OLD_VERSION, `${file} of the bundle`);
    writeFileSync(join(bundle, file), `${JSON.stringify({...json, version: NEW_VERSION}, null, 2)}\n`);
  }
  writeFileSync(join(bundle, 'version'), `${NEW_VERSION}\n`);
  const sums = readFileSync(join(bundle, 'SHA256SUMS'), 'utf8').replace(/^[0-9a-f]{64}  (app\/package\.json|app\/oclif\.manifest\.json|version)$/gm, (_line, file: string) =>
    `${createHash('sha256').update(readFileSync(join(bundle, file))).digest('hex')}  ${file}`,
  );
  writeFileSync(join(bundle, 'SHA256SUMS'), sums);
  mkdirSync(join(work, 'new'));
  // gzip -1: the archive only has to travel to the sandboxes.
  await execa('bash', ['-c', 'tar --sort=name --owner=0 --group=0 --numeric-owner -C "$1" -cf - dataflux-func-sidecar | gzip -1 > "$2"', 'tar', paths.newTree, paths.newBundle]);
}

/** Boots a host with sshd on the bridge and no Node.js, and lets the controller's throwaway key in. */
async function bootHost(host: (typeof HOSTS)[number], publicKey: string): Promise<void> {
  const up = await sandbox(['up', host.container, paths.empty], {env: {SANDBOX_NET: 'bridge', SANDBOX_NODE: 'none'}});
  if (up.exitCode !== 0) throw new Error(`sandbox up ${host.container} failed:\n${up.all}`);
  host.address = (await sandbox(['addr', host.container])).stdout.trim();
  assert.match(host.address, /^\d+\.\d+\.\d+\.\d+$/, `the bridge address of ${host.container}`);
  await onHost(host, 'install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys', publicKey);
}

/** ansible-playbook site.yml with these extra variables, from a directory with nothing of ours in it. */
async function runPlaybook(t: TestContext, label: string, extraVars: Record<string, string>): Promise<PlaybookRun> {
  const started = Date.now();
  // -v: each task's output in the log, where no key may show.
  const result = await execa('ansible-playbook', ['-v', '-i', paths.inventory, PLAYBOOK, ...Object.entries(extraVars).flatMap(([key, value]) => ['-e', `${key}=${value}`])], {
    cwd: work,
    reject: false,
    all: true,
    stdin: 'ignore',
    env: {
      ANSIBLE_CONFIG: join(work, 'ansible.cfg'),
      ANSIBLE_HOST_KEY_CHECKING: 'False',
      ANSIBLE_SSH_ARGS: '-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null',
      ANSIBLE_SSH_CONTROL_PATH_DIR: paths.controlSockets,
      ANSIBLE_PIPELINING: 'True',
      ANSIBLE_FORKS: '10',
      ANSIBLE_PYTHON_INTERPRETER: '/usr/bin/python3',
      ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
      ANSIBLE_RETRY_FILES_ENABLED: 'False',
      ANSIBLE_NOCOLOR: '1',
    },
  });
  const seconds = (Date.now() - started) / 1000;
  const output = result.all ?? '';
  const recap: Record<string, Recap> = {};
  const recapLines: string[] = [];
  for (const match of output.matchAll(/^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)\s*$/gm)) {
    const [line, host, ...counts] = match;
    const [ok, changed, unreachable, failed, skipped, rescued, ignored] = counts.map(Number);
    recap[host] = {ok, changed, unreachable, failed, skipped, rescued, ignored};
    recapLines.push(line.trimEnd());
  }
  t.diagnostic(`${label}: ansible-playbook exited ${result.exitCode} after ${seconds.toFixed(1)} s\n${recapLines.join('\n')}`);
  return {exitCode: result.exitCode ?? -1, output, recap, recapLines, seconds};
}

interface Connector {
  id: string;
  title: string;
  host: string;
  port: number;
  protocol: string;
  secretKey: string;
}

/** A host's line of the play recap; the whole output when it has none. */
function recapOf(run: PlaybookRun, host: string): Recap {
  const recap = run.recap[host];
  if (!recap) throw new Error(`no PLAY RECAP line for ${host}:\n${run.output}`);
  return recap;
}

const readSheet = (): Connector[] => JSON.parse(readFileSync(paths.sheet, 'utf8')) as Connector[];

/** dffs-ctl exec from this machine to a host, signed with a key as Func's connector would: the new bundle's client. */
function signedExec(host: string, port: number, key: string, command: string) {
  const app = join(paths.newTree, 'dataflux-func-sidecar/app');
  return execa(join(app, 'runtime/bin/node'), [join(app, 'bin/run.js'), 'exec', '--url', `http://${host}:${port}`, command], {
    reject: false,
    stdin: 'ignore',
    // The key through the environment, not the command line.
    env: {DFFS_SECRET_KEY: key},
    extendEnv: false,
  });
}

const hostnames = new Map<string, string>();

async function assertKeysAnswer(sheet: Connector[]): Promise<void> {
  await Promise.all(
    sheet.map(async (connector) => {
      const answer = await signedExec(connector.host, connector.port, connector.secretKey, 'hostname');
      assert.equal(answer.exitCode, 0, `the key of ${connector.title} at ${connector.host}: ${answer.stderr}`);
      assert.equal(answer.stdout, hostnames.get(connector.title));
    }),
  );
}

async function status(host: (typeof HOSTS)[number]): Promise<{healthy: boolean; version?: string; secret?: {oldKeyAcceptedUntil?: string}}> {
  const result = await sandbox(['exec', host.container, 'dffs-ctl', 'status', '--json']);
  return JSON.parse(result.stdout) as {healthy: boolean; version?: string};
}

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the fleet test boots systemd containers with systemd-nspawn, which needs root: run npm test as root (CI does)');
  const missing = (await Promise.all(['ansible-playbook', 'ssh', 'ssh-keygen', 'tar', 'gzip'].map(async (tool) => ((await execa('sh', ['-c', `command -v ${tool}`], {reject: false})).exitCode === 0 ? [] : [tool])))).flat();
  if (missing.length > 0) {
    throw new Error(`the fleet test needs ${missing.join(', ')}: apt-get install ansible-core openssh-client (npm test installs them when run as root)`);
  }
  for (const directory of [paths.empty, join(work, 'ssh'), paths.controlSockets, join(work, 'old'), join(work, 'ansible-tmp')]) mkdirSync(directory, {recursive: true, mode: 0o700});
  writeFileSync(join(work, 'ansible.cfg'), '# the test sets everything through ANSIBLE_* variables\n');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'dffs-fleet-test', '-f', paths.sshKey]);
  const publicKey = readFileSync(`${paths.sshKey}.pub`, 'utf8');
  // The bundles first, then the hosts one at a time: a bundle build beside three booting
  // containers kept one from booting within the sandbox's minute on a busy 2-core machine.
  copyFileSync(await currentBundle(), paths.oldBundle);
  await makeNewerBundle();
  for (const host of HOSTS) await bootHost(host, publicKey);
  const network = HOSTS[0].address.replace(/\.\d+$/, '.0/24');
  // JSON is YAML: the inventory an operator would write, with each host's own address in BIND so
  // that the controller, like Func, reaches it over the network.
  const inventory = {
    all: {
      hosts: Object.fromEntries(HOSTS.map((host) => [host.name, {ansible_host: host.address, sidecar_bind: `127.0.0.1:${PORT},${host.address}:${PORT}`}])),
      vars: {ansible_user: 'root', ansible_ssh_private_key_file: paths.sshKey, sidecar_allow_from: `127.0.0.0/8,${network}`},
    },
  };
  writeFileSync(paths.inventory, JSON.stringify(inventory, null, 2));
  for (const host of HOSTS) hostnames.set(host.name, await onHost(host, 'hostname'));
});

after(async () => {
  // ssh's connection masters, then the hosts, then the keys, bundles and inventory.
  const sockets = existsSync(paths.controlSockets) ? readdirSync(paths.controlSockets) : [];
  await Promise.all(sockets.map((socket) => execa('ssh', ['-o', `ControlPath=${join(paths.controlSockets, socket)}`, '-O', 'exit', 'fleet-host'], {reject: false, stdin: 'ignore'})));
  await Promise.all(HOSTS.map((host) => sandbox(['down', host.container])));
  rmSync(work, {recursive: true, force: true});
});

describe('the Ansible playbook on three hosts', () => {
  it('installs on three hosts without Node.js; each key on the connector sheet signs a command its host answers', async (t) => {
    for (const host of HOSTS) assert.equal((await sandbox(['exec', host.container, 'bash', '-c', 'command -v node || ls /usr/local/bin/node /usr/bin/node'])).exitCode, 2, `${host.name} has no Node.js`);
    const run = await runPlaybook(t, 'install on three hosts', {sidecar_bundle: paths.oldBundle, sidecar_connectors_file: paths.sheet});
    assert.equal(run.exitCode, 0, run.output);
    for (const host of HOSTS) {
      assert.equal(recapOf(run, host.name).failed, 0, run.output);
      assert.ok(recapOf(run, host.name).changed > 0, `${host.name} changed`);
    }
    assert.equal(statSync(paths.sheet).mode & 0o777, 0o600);
    const sheet = readSheet();
    assert.deepEqual(
      sheet.map(({secretKey, ...rest}) => ({...rest, keyLength: secretKey.length})),
      HOSTS.map((host) => ({id: `sidecar_${host.name.replace('-', '_')}`, title: host.name, host: host.address, port: PORT, protocol: 'http', keyLength: 32})),
    );
    assert.equal(new Set(sheet.map((connector) => connector.secretKey)).size, 3, 'each host has its own key');
    for (const {secretKey} of sheet) assert.ok(!run.output.includes(secretKey), 'no key in the playbook\'s verbose output');
    await assertKeysAnswer(sheet);
    for (const host of HOSTS) {
      assert.equal((await status(host)).version, OLD_VERSION);
      assert.equal(await onHost(host, 'test -e /var/cache/dataflux-func-sidecar && echo left || echo removed'), 'removed', 'the staging directory');
    }
  });

  it('changes nothing when run again', async (t) => {
    const run = await runPlaybook(t, 'second run', {sidecar_bundle: paths.oldBundle, sidecar_connectors_file: paths.sheet});
    assert.equal(run.exitCode, 0, run.output);
    assert.deepEqual(Object.keys(run.recap).sort(), HOSTS.map((host) => host.name));
    for (const host of HOSTS) assert.deepEqual([host.name, recapOf(run, host.name).changed, recapOf(run, host.name).failed], [host.name, 0, 0], run.output);
  });

  it('upgrades one host at a time and stops at one that cannot come up: it is back on the old version, the hosts after it untouched', async (t) => {
    const before = new Map<string, {release: string; pid: string}>();
    for (const host of HOSTS) {
      before.set(host.name, {release: await onHost(host, `readlink ${LIB}/current`), pid: await onHost(host, 'systemctl show -p MainPID --value dataflux-func-sidecar')});
    }
    // The running sidecar holds its port, so nothing else can take it until the upgrade restarts
    // the service: this takes it then, and gives it back once the installer has put the previous
    // release back, so that the old version can come up again.
    const taker = `import os, socket, sys, time
link = '${LIB}/current'
old = os.readlink(link)
deadline = time.time() + 180
held = None
while held is None and time.time() < deadline:
    candidate = socket.socket()
    candidate.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        candidate.bind(('0.0.0.0', ${PORT}))
        candidate.listen()
        held = candidate
    except OSError:
        candidate.close()
        time.sleep(0.005)
print('took the port' if held else 'never got the port', flush=True)
moved = False
while held is not None and time.time() < deadline:
    current = os.readlink(link)
    moved = moved or current != old
    if moved and current == old:
        break
    time.sleep(0.01)
print('gave it back after the rollback' if moved else 'gave it back without a rollback', flush=True)
`;
    await onHost(BLOCKED, 'cat > /root/take-port.py && systemd-run --quiet --unit=take-port --collect python3 /root/take-port.py', taker);

    const run = await runPlaybook(t, `upgrade to ${NEW_VERSION} with the port of ${BLOCKED.name} taken`, {sidecar_bundle: paths.newBundle, sidecar_connectors_file: paths.sheet});
    assert.equal(run.exitCode, 2, `the run fails\n${run.output}`);
    assert.equal(await onHost(BLOCKED, 'journalctl -u take-port -o cat --no-pager | grep -E "^(took|never|gave)"'), 'took the port\ngave it back after the rollback');

    const [first, blocked, last] = HOSTS;
    assert.deepEqual([recapOf(run, first.name).failed, recapOf(run, blocked.name).failed, recapOf(run, blocked.name).rescued, recapOf(run, last.name).changed, recapOf(run, last.name).failed], [0, 1, 1, 0, 0], run.output);
    assert.ok(recapOf(run, first.name).changed > 0);
    assert.match(run.output, new RegExp(`port ${PORT} is already in use`));
    assert.match(run.output, new RegExp(`run-sidecar\\.sh put ${OLD_VERSION.replace(/\./g, '\\.')} back\\. ${OLD_VERSION.replace(/\./g, '\\.')} is healthy and answers a signed command\\.`));
    assert.doesNotMatch(run.output, /PLAY \[Sidecar - check the hosts/, 'the run stops at the failed host');

    // The first host is on the new version; the blocked one back on its old release, healthy.
    const firstStatus = await status(first);
    assert.deepEqual([firstStatus.version, firstStatus.healthy], [NEW_VERSION, true]);
    const blockedStatus = await status(blocked);
    assert.deepEqual([blockedStatus.version, blockedStatus.healthy], [OLD_VERSION, true]);
    assert.equal(await onHost(blocked, `readlink ${LIB}/current`), before.get(blocked.name)?.release);
    // The last host was not touched at all: same release, same process, nothing staged.
    assert.deepEqual(
      {release: await onHost(last, `readlink ${LIB}/current`), pid: await onHost(last, 'systemctl show -p MainPID --value dataflux-func-sidecar')},
      before.get(last.name),
    );
    assert.equal((await status(last)).version, OLD_VERSION);
    assert.equal(await onHost(last, 'test -e /var/cache/dataflux-func-sidecar && echo staged || echo nothing'), 'nothing');
    // Keys are kept through an upgrade and its rollback, and none shows in the verbose output.
    await assertKeysAnswer(readSheet());
    for (const {secretKey} of readSheet()) assert.ok(!run.output.includes(secretKey), 'no key in the playbook\'s verbose output');
  });

  it(`rotates every key with a grace: the old keys work for ${GRACE_SECONDS} s, then are refused; the sheet's new keys work`, async (t) => {
    const oldSheet = readSheet();
    const run = await runPlaybook(t, `rotate with a grace of ${GRACE_SECONDS}s`, {sidecar_action: 'rotate', sidecar_grace: `${GRACE_SECONDS}s`, sidecar_connectors_file: paths.sheet});
    assert.equal(run.exitCode, 0, run.output);
    for (const host of HOSTS) assert.deepEqual([recapOf(run, host.name).changed > 0, recapOf(run, host.name).failed], [true, 0], run.output);
    const newSheet = readSheet();
    assert.deepEqual(newSheet.map((connector) => connector.id), oldSheet.map((connector) => connector.id));
    for (const [index, connector] of newSheet.entries()) assert.notEqual(connector.secretKey, oldSheet[index].secretKey, `${connector.title} has a new key`);
    assert.equal(statSync(paths.sheet).mode & 0o777, 0o600);

    const graceEnds = Math.max(...(await Promise.all(HOSTS.map(async (host) => Date.parse((await status(host)).secret?.oldKeyAcceptedUntil ?? '')))));
    assert.ok(Number.isFinite(graceEnds), 'status shows until when the old keys are accepted');
    await assertKeysAnswer(oldSheet);
    assert.ok(Date.now() < graceEnds, `the old keys were tried within the grace (the rotation took ${run.seconds.toFixed(1)} s)`);
    await assertKeysAnswer(newSheet);

    await new Promise((resolve) => setTimeout(resolve, graceEnds - Date.now() + 1000));
    await Promise.all(
      oldSheet.map(async (connector) => {
        const refused = await signedExec(connector.host, connector.port, connector.secretKey, 'hostname');
        assert.equal(refused.exitCode, 77, `the old key of ${connector.title} after the grace: ${refused.stderr}`);
        assert.match(refused.stderr, /HTTP 401/);
      }),
    );
    await assertKeysAnswer(newSheet);
  });

  it('uninstalls with purge: no unit, user, file or process is left on any host', async (t) => {
    const run = await runPlaybook(t, 'uninstall with purge', {sidecar_action: 'uninstall', sidecar_purge: 'true'});
    assert.equal(run.exitCode, 0, run.output);
    for (const host of HOSTS) {
      assert.deepEqual([recapOf(run, host.name).changed > 0, recapOf(run, host.name).failed], [true, 0], run.output);
      assert.equal(await onHost(host, 'systemctl list-units --all --no-legend "dataflux-func-sidecar*"; systemctl list-unit-files --no-legend "dataflux-func-sidecar*" || true'), '', `${host.name}: units`);
      assert.equal((await sandbox(['exec', host.container, 'getent', 'passwd', 'dffs', 'dffs-daemon'])).exitCode, 2, `${host.name}: users`);
      assert.equal((await sandbox(['exec', host.container, 'getent', 'group', 'dffs', 'dffs-daemon'])).exitCode, 2, `${host.name}: groups`);
      const leftovers = await onHost(
        host,
        'ls -d /usr/local/lib/dataflux-func-sidecar /usr/local/bin/dffs-ctl /usr/local/bin/dataflux-func-sidecar /etc/dataflux-func-sidecar* /etc/systemd/system/dataflux-func-sidecar* /var/lib/dataflux-func-sidecar* /var/cache/dataflux-func-sidecar /var/backups/dataflux-func-sidecar* /run/dataflux-func-sidecar* 2>/dev/null || true',
      );
      assert.equal(leftovers, '', `${host.name}: files`);
      // ps itself, not a shell whose own command line would name what it looks for.
      const processes = (await sandbox(['exec', host.container, 'ps', '-eo', 'user:20=,args='])).stdout.split('\n');
      assert.deepEqual(processes.filter((line) => /dataflux-func-sidecar|dffs-spawn|^dffs/.test(line)), [], `${host.name}: processes`);
    }
  });
});
