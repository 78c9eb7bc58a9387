#!/usr/bin/env node
// The daemon starts without oclif when `serve` has only its own flags: 14 MB less resident and
// about 60 ms sooner (bench/results). Everything else, --help included, goes through oclif.
if (process.argv[2] !== 'serve' || !(await (await import('../dist/serve-cli.js')).leanServe(process.argv.slice(3)))) {
  // oclif is CommonJS: its exports are on `default`, in Node and in the esbuild bundle alike.
  const oclif = await import('@oclif/core');
  await oclif.default.execute({dir: import.meta.url});
}
