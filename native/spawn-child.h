/*
 * Starting `/bin/sh -c COMMAND` with vfork, shared by dffs-spawn (the helper process) and
 * dffs-spawn.node (the same inside the daemon). A vfork child shares its parent's memory until
 * execve, so the child side makes system calls only: no allocation, no locks, no stdio.
 */
#ifndef DFFS_SPAWN_CHILD_H
#define DFFS_SPAWN_CHILD_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * A spawn request as the daemon encodes it (src/daemon/spawn-request.ts):
 * LIMIT \0 COMMAND \0 WORKDIR \0 (empty: none) then NAME=VALUE \0 ... The strings stay in place.
 */
struct spawn_request {
  uint64_t limit; /* bytes kept of stdout, and again of stderr; the rest is read and counted only */
  char *command;
  char *workdir;  /* "" for none */
  char **envp;    /* malloc'd, NULL-terminated */
};

/* Returns 0, or an error message for a malformed request. */
__attribute__((noinline)) static const char *parse_spawn_request(char *payload, size_t size, struct spawn_request *request) {
  char *end = payload + size;
  if (size == 0 || end[-1] != '\0') return "malformed spawn request";
  char *command = payload + strlen(payload) + 1;
  if (command >= end) return "malformed spawn request";
  char *workdir = command + strlen(command) + 1;
  if (workdir >= end) return "malformed spawn request";
  char *cursor = workdir + strlen(workdir) + 1;
  size_t env_count = 0;
  for (char *p = cursor; p < end; p += strlen(p) + 1) env_count++;
  char **envp = calloc(env_count + 1, sizeof(char *));
  if (!envp) return "out of memory";
  for (size_t i = 0; i < env_count; i++) {
    envp[i] = cursor;
    cursor += strlen(cursor) + 1;
  }
  *request = (struct spawn_request){strtoull(payload, NULL, 10), command, workdir, envp};
  return 0;
}

struct spawn_child {
  const struct spawn_request *request;
  int stdin_fd, stdout_fd, stderr_fd;
  /* Signals set back to their default action before exec (what the parent ignores or handles). */
  const sigset_t *reset;
  /* Where the child leaves errno when a step fails, before it exits: the parent reads it. */
  volatile int *error;
};

/*
 * The vfork child: its own session and process group (the daemon signals the group), the pipes
 * as stdio, the workdir, default signals with none blocked, no other file descriptor, then exec.
 * The parent blocks all signals around vfork, so no handler of the parent's runs here: a signal
 * that reached the child meanwhile (one sent to the parent's process group before setsid) is
 * pending, and is set back to its default action before the mask is cleared.
 */
__attribute__((noreturn)) static void run_spawn_child(const struct spawn_child *child) {
  const struct spawn_request *request = child->request;
  if (setsid() < 0 || dup2(child->stdin_fd, 0) < 0 || dup2(child->stdout_fd, 1) < 0 || dup2(child->stderr_fd, 2) < 0 ||
      (*request->workdir && chdir(request->workdir) < 0)) {
    *child->error = errno;
    _exit(127);
  }
  sigset_t pending;
  if (sigpending(&pending) != 0) sigemptyset(&pending);
  struct sigaction default_action;
  memset(&default_action, 0, sizeof default_action);
  default_action.sa_handler = SIG_DFL;
  for (int number = 1; number < NSIG; number++) {
    if (sigismember(child->reset, number) == 1 || sigismember(&pending, number) == 1) sigaction(number, &default_action, NULL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
#ifdef SYS_close_range
  /* Whatever the parent has open without close-on-exec stays out of commands (Linux 5.9+). */
  syscall(SYS_close_range, 3U, ~0U, 0U);
#endif
  char *argv[] = {"/bin/sh", "-c", request->command, NULL};
  execve("/bin/sh", argv, request->envp);
  *child->error = errno;
  _exit(127);
}

#endif
