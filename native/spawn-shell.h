/*
 * Starting `/bin/sh -c COMMAND` with vfork, shared by dffs-spawn (the helper process) and
 * dffs-spawn.node (the same inside the daemon). A vfork child shares its parent's memory until
 * execve, so the child side makes system calls only: no allocation, no locks, no stdio.
 */
#ifndef DFFS_SPAWN_SHELL_H
#define DFFS_SPAWN_SHELL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* Set by a vfork child that could not exec, before it exits: it shares its parent's memory until then. */
static volatile int spawn_errno;

struct spawn_child {
  const struct spawn_request *request;
  int stdin_fd, stdout_fd, stderr_fd;
  /* Signals set back to their default action before exec (what the parent ignores or handles). */
  const sigset_t *reset;
};

/*
 * The vfork child: its own session and process group (the daemon signals the group), the pipes
 * as stdio, the workdir, default signals with none blocked, no other file descriptor, then exec.
 * A parent with signal handlers blocks all signals around vfork, so none of them runs here: a
 * signal that reached the child meanwhile (one sent to the parent's process group before setsid)
 * is pending, and is set back to its default action before the mask is cleared.
 */
__attribute__((noreturn)) static void run_spawn_child(const struct spawn_child *child) {
  const struct spawn_request *request = child->request;
  if (setsid() < 0 || dup2(child->stdin_fd, 0) < 0 || dup2(child->stdout_fd, 1) < 0 || dup2(child->stderr_fd, 2) < 0 ||
      (*request->workdir && chdir(request->workdir) < 0)) {
    spawn_errno = errno;
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
  spawn_errno = errno;
  _exit(127);
}

/* The kernel's signal set, in bytes: what rt_sigprocmask takes. */
#define KERNEL_SIGSET_SIZE ((NSIG - 1) / 8)

struct started_shell {
  pid_t pid;
  int out, err;  /* the read ends of its stdout and stderr, non-blocking */
  int pidfd;     /* readable when it exits; -1 when not asked for */
  uint64_t limit; /* from the request */
};

/*
 * Starts the request's `/bin/sh -c COMMAND` with vfork. Returns 0, or -1 with `message` saying
 * why, and nothing left open or running. `reset`: signals the child sets back to their default.
 * `block_signals`: for a parent with signal handlers; all are blocked around vfork, through the
 * system call, as glibc's sigprocmask leaves out those glibc uses itself. `want_pidfd`: the
 * command is not started without a pidfd to see its exit by.
 */
static int start_shell(char *payload, size_t size, int stdin_fd, const sigset_t *reset, int block_signals, int want_pidfd,
                       struct started_shell *shell, char *message, size_t message_size) {
  struct spawn_request request;
  const char *malformed = parse_spawn_request(payload, size, &request);
  if (malformed) {
    snprintf(message, message_size, "%s", malformed);
    return -1;
  }
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    snprintf(message, message_size, "%s", strerror(errno));
    free(request.envp);
    return -1;
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    snprintf(message, message_size, "%s", strerror(errno));
    close(out[0]);
    close(out[1]);
    free(request.envp);
    return -1;
  }
  sigset_t all, previous;
  if (block_signals) {
    memset(&all, 0xff, sizeof all);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &previous, KERNEL_SIGSET_SIZE);
  }
  spawn_errno = 0;
  struct spawn_child child = {&request, stdin_fd, out[1], err[1], reset};
  pid_t pid = vfork();
  if (pid == 0) run_spawn_child(&child);
  int rc = pid < 0 ? errno : spawn_errno;
  /* A child that failed before exec has exited: reap it here, it never was a command. */
  if (pid > 0 && rc != 0) waitpid(pid, NULL, 0);
  if (block_signals) syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, NULL, KERNEL_SIGSET_SIZE);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    snprintf(message, message_size, "spawn /bin/sh%s%s: %s", *request.workdir ? " in " : "", request.workdir, strerror(rc));
  }
  free(request.envp);
  int pidfd = -1;
  if (rc == 0 && want_pidfd) {
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
      /* Its exit could not be seen (out of file descriptors): the command goes, as if never started. */
      snprintf(message, message_size, "cannot watch the command: %s", strerror(errno));
      kill(-pid, SIGKILL);
      waitpid(pid, NULL, 0);
      rc = -1;
    }
  }
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    return -1;
  }
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  *shell = (struct started_shell){pid, out[0], err[0], pidfd, request.limit};
  return 0;
}

#endif
