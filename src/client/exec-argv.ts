/**
 * `dffs-ctl exec` reads its command line as `ssh host cmd` and `docker exec` do: flags first, then
 * everything from the first argument that is not a flag (or everything after `--`) is the command.
 * This puts a `--` before that command, so that neither oclif nor its help handling takes the
 * command's own flags (`exec id -un`, `exec ls --help`) as the sidecar's.
 */
export function commandAfterDashes(argv: readonly string[], valueFlags: ReadonlySet<string>): string[] {
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === '--') return [...argv];
    if (!arg.startsWith('-') || arg === '-') return [...argv.slice(0, index), '--', ...argv.slice(index)];
    // A flag that takes a value takes the next argument too, unless written --flag=value.
    if (valueFlags.has(arg)) index++;
  }
  return [...argv];
}
