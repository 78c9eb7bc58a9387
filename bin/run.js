#!/usr/bin/env node
// The daemon starts without oclif when `serve` has only its own flags: 14 MB less resident and
// about 60 ms sooner (bench/results). Everything else, --help included, goes through oclif.
if (process.argv[2] !== 'serve' || !(await (await import('../dist/serve-cli.js')).leanServe(process.argv.slice(3)))) {
  const {execute} = await import('@oclif/core');
  await execute({dir: import.meta.url});
}
