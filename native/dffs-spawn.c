/*
 * dffs-spawn: the sidecar's process launcher. Node.js starts a child with fork(), which copies
 * the page tables of the whole daemon and blocks its event loop until the child has called
 * exec; this small helper uses vfork instead, so a spawn costs what it costs the machine. The
 * daemon keeps every decision (timeouts, kills, output limits); the helper only starts
 * `/bin/sh -c COMMAND` and relays what happens.
 *
 * Frames, both ways: u32 length (of what follows, little-endian), u8 type, u32 job id, payload.
 *   daemon -> helper  'S' spawn: LIMIT \0 COMMAND \0 WORKDIR \0 (empty: none) then NAME=VALUE \0 ...
 *                     (LIMIT, in decimal: bytes relayed of stdout, and again of stderr; the rest
 *                     is read and counted only, so the daemon never handles output it drops)
 *                     'R' release: stop reading the job's output (a background child holds it)
 *   helper -> daemon  'P' started: i32 pid       'F' failed to start: message
 *                     'O' stdout bytes          'E' stderr bytes
 *                     'X' exited: i32 wait status
 *                     'C' closed: output at end (or released) and exited; the job is done.
 *                         Payload: u64 bytes read from stdout, u64 from stderr
 * The helper exits when its stdin closes: the daemon is gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn-shell.h"

#define MAX_FRAME (64u << 20)
#define READ_CHUNK 65536

struct job {
  uint32_t id;
  pid_t pid;
  int out, err; /* read ends, -1 once at end */
  int pidfd;    /* readable when the shell exits; -1 once reaped, or without pidfds */
  int exited;
  uint64_t limit, out_total, err_total;
};

static struct job *jobs;
static size_t job_count, job_capacity;
/*
 * Exits are seen through a pidfd per command (Linux 5.3+): readable when the shell exits, in the
 * same poll as its output, so an exit costs no signal, handler, self-pipe write and second poll.
 * Without pidfds, a SIGCHLD handler writes to a self-pipe instead.
 */
static int use_pidfd;
static int sigchld_pipe[2] = {-1, -1};
static int dev_null; /* every command's stdin, opened once */

static void die(const char *what) {
  fprintf(stderr, "dffs-spawn: %s: %s\n", what, strerror(errno));
  exit(1);
}

/*
 * Frames for the daemon wait here and go in one write per turn of the loop: fewer wake-ups. Pids
 * and output are not urgent (the daemon needs a pid only to signal a command, and output only at
 * the end): a buffer of nothing else waits up to RELAY_DELAY_MS more, or until it holds
 * RELAY_BATCH bytes, so that a short command's pid, output and exit reach the daemon in one write.
 */
#define RELAY_DELAY_MS 2
#define RELAY_BATCH (4 * READ_CHUNK)
static unsigned char *output;
static size_t output_used, output_capacity;
static int output_urgent;
static long long flush_deadline_ms; /* when the buffered frames must go */

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static void flush_output(void) {
  size_t offset = 0;
  while (offset < output_used) {
    ssize_t written = write(1, output + offset, output_used - offset);
    if (written < 0) {
      if (errno == EINTR) continue;
      exit(0); /* the daemon is gone (SIGPIPE has usually ended the helper already) */
    }
    offset += written;
  }
  output_used = 0;
  output_urgent = 0;
}

static void send_frame(char type, uint32_t id, const void *payload, size_t size) {
  size_t needed = 9 + size;
  if (output_capacity - output_used < needed) {
    while (output_capacity - output_used < needed) output_capacity = output_capacity ? output_capacity * 2 : 4 * READ_CHUNK;
    output = realloc(output, output_capacity);
    if (!output) die("realloc");
  }
  if (type != 'P' && type != 'O' && type != 'E') output_urgent = 1;
  else if (output_used == 0) flush_deadline_ms = now_ms() + RELAY_DELAY_MS;
  uint32_t length = (uint32_t)(5 + size);
  unsigned char *frame = output + output_used;
  memcpy(frame, &length, 4);
  frame[4] = (unsigned char)type;
  memcpy(frame + 5, &id, 4);
  if (size) memcpy(frame + 9, payload, size);
  output_used += needed;
}

static void send_int(char type, uint32_t id, int32_t value) {
  send_frame(type, id, &value, sizeof value);
}

static void remove_job(size_t index) {
  jobs[index] = jobs[--job_count];
}

/* A job is done once it has exited and its output is at end: 'C' comes after 'X', always. */
static int finish_if_done(size_t index) {
  struct job *job = &jobs[index];
  if (!job->exited || job->out >= 0 || job->err >= 0) return 0;
  uint64_t totals[2] = {job->out_total, job->err_total};
  send_frame('C', job->id, totals, sizeof totals);
  remove_job(index);
  return 1;
}

static void reaped(size_t index, int status) {
  struct job *job = &jobs[index];
  job->exited = 1;
  if (job->pidfd >= 0) close(job->pidfd);
  job->pidfd = -1;
  send_int('X', job->id, status);
  finish_if_done(index);
}

/* With pidfds: the job whose pidfd became readable has exited. */
static void reap_job(size_t index) {
  int status;
  if (waitpid(jobs[index].pid, &status, WNOHANG) == jobs[index].pid) reaped(index, status);
}

static void close_output(struct job *job) {
  if (job->out >= 0) close(job->out);
  if (job->err >= 0) close(job->err);
  job->out = job->err = -1;
}

static void spawn_job(uint32_t id, char *payload, size_t size) {
  /*
   * vfork rather than posix_spawn: glibc's posix_spawn sets or reads the disposition of every
   * signal in the child before exec, 64 system calls on the path of every command. The helper set
   * all signals to their default and unblocked them when it started, so the child inherits what
   * commands should get. Only without pidfds has the helper a handler (SIGCHLD): then signals are
   * blocked around vfork, as posix_spawn does, so that the handler cannot run in the child while
   * it shares the helper's memory, and the child resets it.
   */
  sigset_t reset;
  sigemptyset(&reset);
  if (!use_pidfd) sigaddset(&reset, SIGCHLD);
  struct started_shell shell;
  char message[512];
  if (start_shell(payload, size, dev_null, &reset, !use_pidfd, use_pidfd, &shell, message, sizeof message) != 0) {
    send_frame('F', id, message, strlen(message));
    return;
  }
  if (job_count == job_capacity) {
    job_capacity = job_capacity ? job_capacity * 2 : 64;
    jobs = realloc(jobs, job_capacity * sizeof(struct job));
    if (!jobs) die("realloc");
  }
  jobs[job_count++] = (struct job){id, shell.pid, shell.out, shell.err, shell.pidfd, 0, shell.limit, 0, 0};
  send_int('P', id, shell.pid);
}

static void release_job(uint32_t id) {
  for (size_t i = 0; i < job_count; i++) {
    if (jobs[i].id == id) {
      close_output(&jobs[i]);
      finish_if_done(i);
      return;
    }
  }
}

static unsigned char *input;
static size_t input_used, input_capacity;

/* Reads what the daemon sent and acts on every whole frame. Returns 0 when stdin is at end. */
static int read_requests(void) {
  if (input_capacity - input_used < READ_CHUNK) {
    input_capacity = input_capacity ? input_capacity * 2 : 4 * READ_CHUNK;
    input = realloc(input, input_capacity);
    if (!input) die("realloc");
  }
  ssize_t got = read(0, input + input_used, input_capacity - input_used);
  if (got == 0) return 0;
  if (got < 0) return errno == EINTR || errno == EAGAIN;
  input_used += got;
  size_t offset = 0;
  while (input_used - offset >= 4) {
    uint32_t length;
    memcpy(&length, input + offset, 4);
    if (length < 5 || length > MAX_FRAME) {
      fprintf(stderr, "dffs-spawn: bad frame length %u\n", length);
      exit(1);
    }
    if (input_used - offset - 4 < length) break;
    unsigned char *frame = input + offset + 4;
    uint32_t id;
    memcpy(&id, frame + 1, 4);
    if (frame[0] == 'S') {
      /* The payload is used in place: it ends in the NUL the daemon puts after the last string. */
      spawn_job(id, (char *)frame + 5, length - 5);
    } else if (frame[0] == 'R') {
      release_job(id);
    }
    offset += 4 + length;
  }
  memmove(input, input + offset, input_used - offset);
  input_used -= offset;
  return 1;
}

static void reap_children(void) {
  char drain[64];
  while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {
  }
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (size_t i = 0; i < job_count; i++) {
      if (jobs[i].pid == pid) {
        reaped(i, status);
        break;
      }
    }
  }
}

/*
 * Relays one read of a job's stdout or stderr, up to its limit; at end, closes it. When the pipe
 * has hung up (no writer is left), reads on to its end, so that a command's last output, its exit
 * and its close reach the daemon in one write.
 */
static void relay_output(struct job *job, int *fd, uint64_t *total, char type, int hung_up) {
  static char buffer[READ_CHUNK];
  for (;;) {
    ssize_t got = read(*fd, buffer, sizeof buffer);
    if (got > 0) {
      uint64_t before = *total;
      *total += got;
      if (before < job->limit) {
        uint64_t room = job->limit - before;
        send_frame(type, job->id, buffer, (size_t)got < room ? (size_t)got : (size_t)room);
      }
      if (hung_up) continue;
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      close(*fd);
      *fd = -1;
    } else if (errno == EINTR) {
      continue;
    }
    return;
  }
}

static void on_sigchld(int signal_number) {
  (void)signal_number;
  int saved = errno;
  ssize_t ignored = write(sigchld_pipe[1], "", 1);
  (void)ignored;
  errno = saved;
}

/* Usage: dffs-spawn [--no-pidfd]   (--no-pidfd: see exits through SIGCHLD, as without pidfds; for tests) */
int main(int argc, char **argv) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  /*
   * Every signal at its default and none blocked, as commands get them: the helper inherits what
   * its parent had set. (An inherited SIG_IGN for SIGCHLD would also reap commands before their
   * status is read.) SIGPIPE stays at its default too: it ends the helper when the daemon is gone.
   */
  for (int number = 1; number < NSIG; number++) {
    if (number != SIGKILL && number != SIGSTOP) signal(number, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (dev_null < 0) die("/dev/null");
  int probe = argc > 1 && strcmp(argv[1], "--no-pidfd") == 0 ? -1 : (int)syscall(SYS_pidfd_open, getpid(), 0);
  use_pidfd = probe >= 0;
  if (use_pidfd) {
    close(probe);
  } else {
    if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) die("pipe2");
    struct sigaction action = {0};
    action.sa_handler = on_sigchld;
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
  }

  struct pollfd *fds = NULL;
  size_t fds_capacity = 0;
  for (;;) {
    size_t needed = 2 + 3 * job_count;
    if (needed > fds_capacity) {
      fds_capacity = needed * 2;
      fds = realloc(fds, fds_capacity * sizeof(struct pollfd));
      if (!fds) die("realloc");
    }
    fds[0] = (struct pollfd){0, POLLIN, 0};
    fds[1] = (struct pollfd){sigchld_pipe[0], POLLIN, 0};
    for (size_t i = 0; i < job_count; i++) {
      fds[2 + 3 * i] = (struct pollfd){jobs[i].out, POLLIN, 0};
      fds[3 + 3 * i] = (struct pollfd){jobs[i].err, POLLIN, 0};
      fds[4 + 3 * i] = (struct pollfd){jobs[i].pidfd, POLLIN, 0};
    }
    size_t polled_jobs = job_count;
    long long wait_ms = output_used ? flush_deadline_ms - now_ms() : -1;
    int ready = wait_ms >= 0 || !output_used ? poll(fds, needed, (int)wait_ms) : 0;
    if (ready == 0) {
      flush_output();
      continue;
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents) reap_children();
    /* Output before new requests, and from the end, as finishing a job moves the last one into its slot. */
    for (size_t i = polled_jobs; i-- > 0;) {
      if (i >= job_count) continue;
      struct job *job = &jobs[i];
      short out_events = fds[2 + 3 * i].fd == job->out && job->out >= 0 ? fds[2 + 3 * i].revents : 0;
      short err_events = fds[3 + 3 * i].fd == job->err && job->err >= 0 ? fds[3 + 3 * i].revents : 0;
      if (out_events) relay_output(job, &job->out, &job->out_total, 'O', out_events & POLLHUP);
      if (err_events) relay_output(job, &job->err, &job->err_total, 'E', err_events & POLLHUP);
      /* After this turn's output: the X frame comes after the output read before the exit was seen. */
      if (fds[4 + 3 * i].fd == job->pidfd && job->pidfd >= 0 && fds[4 + 3 * i].revents) reap_job(i);
      else finish_if_done(i);
    }
    if (fds[0].revents && !read_requests()) return 0;
    if (output_urgent || output_used >= RELAY_BATCH) flush_output();
  }
}
