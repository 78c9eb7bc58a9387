#!/usr/bin/env node
// The daemon starts without oclif when `serve` has only its own flags: 14 MB less resident and
// about 60 ms sooner (bench/results). Everything else, --help included, goes through oclif.
if (process.argv[2] !== 'serve' || !(await (await import('../dist/daemon/serve-cli.js')).leanServe(process.argv.slice(3)))) {
  // oclif is CommonJS: its exports are on `default`, in Node and in the esbuild bundle alike.
  const oclif = await import('@oclif/core');
  const args = process.argv.slice(2);
  // The command given to exec keeps its own flags (exec ls --help): they go after a `--`.
  if (args[0] === 'exec') args.splice(1, Infinity, ...(await import('../dist/commands/exec.js')).default.argvForParse(args.slice(1)));
  await oclif.default.execute({args, dir: import.meta.url});
}
