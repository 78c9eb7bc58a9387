/*
 * The machine's limit for the benchmark: how fast a minimal process can spawn `/bin/sh -c CMD`,
 * collect its stdout through a pipe, and reap it, with WORKERS processes doing so side by side.
 * Usage: spawn-baseline SECONDS WORKERS CMD   (prints the total spawns per second)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* vfork and exec, as dffs-spawn does: the cheapest way to start a process (posix_spawn costs about
   33 µs more here, setting every signal's disposition in the child). */
static pid_t start_shell(char **argv, int fds[2]) {
  pid_t pid = vfork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execve("/bin/sh", argv, environ);
    _exit(127);
  }
  return pid;
}

static long spawn_for(double seconds, char *command) {
  char *argv[] = {"/bin/sh", "-c", command, NULL};
  char buffer[4096];
  long count = 0;
  double end = now() + seconds;
  while (now() < end) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = start_shell(argv, fds);
    if (pid < 0) return -1;
    close(fds[1]);
    while (read(fds[0], buffer, sizeof buffer) > 0) {
    }
    close(fds[0]);
    waitpid(pid, NULL, 0);
    count++;
  }
  return count;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s SECONDS WORKERS CMD\n", argv[0]);
    return 2;
  }
  double seconds = atof(argv[1]);
  int workers = atoi(argv[2]);
  long *counts = mmap(NULL, sizeof(long) * workers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  for (int i = 0; i < workers; i++) {
    if (fork() == 0) {
      counts[i] = spawn_for(seconds, argv[3]);
      _exit(0);
    }
  }
  long total = 0;
  for (int i = 0; i < workers; i++) wait(NULL);
  for (int i = 0; i < workers; i++) total += counts[i];
  printf("%.0f\n", total / seconds);
  return 0;
}
