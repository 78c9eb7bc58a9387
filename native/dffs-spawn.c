/*
 * dffs-spawn: the sidecar's process launcher. Node.js starts a child with fork(), which copies the
 * page tables of the whole daemon and blocks its event loop until the child has called exec; this
 * helper starts commands beside the daemon instead, with glibc's posix_spawn. The daemon keeps
 * every decision (timeouts, kills, output limits); the helper only starts `/bin/sh -c COMMAND`
 * and relays what happens.
 *
 * Frames, both ways: u32 length (of what follows, little-endian), u8 type, u32 job id, payload.
 *   daemon -> helper  'S' spawn: LIMIT \0 CGROUP \0 COMMAND \0 WORKDIR \0 then NAME=VALUE \0 ...
 *                     (LIMIT, in decimal: bytes relayed of stdout, and again of stderr; the rest
 *                     is read and counted only. CGROUP: the name of a cgroup made below the
 *                     helper's own for the command (--own-cgroup), removed when the job is done,
 *                     or once what it left running has gone; empty: none. WORKDIR empty: none.)
 *                     'R' release: stop reading the job's output (a background child holds it)
 *                     'K' signal: i32 signal number, to the job's process group; SIGKILL also
 *                         ends the job's cgroup (for a daemon that runs as another user)
 *   helper -> daemon  'P' started: i32 pid       'F' failed to start: message
 *                     'O' stdout bytes          'E' stderr bytes
 *                     'X' exited: i32 wait status, or -1 when it could not be read
 *                     'C' closed: output at end (or released) and exited; the job is done.
 *                         Payload: u64 bytes read from stdout, u64 from stderr
 * The helper exits when its stdin closes: the daemon is gone.
 *
 * Usage: dffs-spawn [--no-pidfd] [--own-cgroup]
 *        dffs-spawn --notify   (messages to systemd: see run_notifier)
 *   --no-pidfd: see exits through SIGCHLD, as on kernels before 5.3 (for tests).
 *   --own-cgroup: give commands cgroups below the helper's own (a systemd unit with Delegate=yes),
 *     where cgroup v2 and cgroup.kill allow; without, a CGROUP asked for is ignored.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define MAX_FRAME (64u << 20)
#define READ_CHUNK 65536

struct job {
  uint32_t id;
  pid_t pid;
  int out, err; /* read ends, -1 once at end */
  int pidfd;    /* readable when the shell exits; -1 once reaped, or without pidfds */
  int exited;
  uint64_t limit, out_total, err_total;
  char *cgroup; /* the cgroup made for it, removed once empty; NULL without */
};

static struct job *jobs;
static size_t job_count, job_capacity;
/*
 * Exits are seen through a pidfd per command (Linux 5.3+): readable when the shell exits, in the
 * same poll as its output. Without pidfds, a SIGCHLD handler writes to a self-pipe instead;
 * posix_spawn blocks signals around its clone and resets every handler in the child.
 */
static int use_pidfd;
static int sigchld_pipe[2] = {-1, -1};
static int dev_null;        /* every command's stdin, opened once */
static char *cgroup_home; /* the helper's own cgroup directory (--own-cgroup), or NULL */
static posix_spawnattr_t spawn_attributes;

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

static void send_error(uint32_t id, const char *format, const char *argument, int error) {
  char message[512];
  snprintf(message, sizeof message, format, argument, strerror(error));
  send_frame('F', id, message, strlen(message));
}

/*
 * Cgroups of finished jobs that still hold processes (a command may leave services running, as
 * under the original Sidecar), tried again every SWEEP_MS until they are empty.
 */
#define SWEEP_MS 10000
static char **leftover_cgroups;
static size_t leftover_count, leftover_capacity;
static long long next_sweep_ms;

/* Removes a cgroup and the empty ones a command made below it; -1 while a process is left in any. */
static int remove_cgroup(const char *path) {
  DIR *directory = opendir(path);
  if (directory) {
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
      if (entry->d_type != DT_DIR || entry->d_name[0] == '.') continue;
      char child[4096];
      if ((size_t)snprintf(child, sizeof child, "%s/%s", path, entry->d_name) < sizeof child) remove_cgroup(child);
    }
    closedir(directory);
  }
  return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Takes ownership of `path`. */
static void remove_or_keep_cgroup(char *path) {
  if (remove_cgroup(path) == 0) {
    free(path);
    return;
  }
  if (leftover_count == leftover_capacity) {
    leftover_capacity = leftover_capacity ? leftover_capacity * 2 : 16;
    leftover_cgroups = realloc(leftover_cgroups, leftover_capacity * sizeof(char *));
    if (!leftover_cgroups) die("realloc");
  }
  if (leftover_count == 0) next_sweep_ms = now_ms() + SWEEP_MS;
  leftover_cgroups[leftover_count++] = path;
}

static void sweep_leftover_cgroups(void) {
  for (size_t i = leftover_count; i-- > 0;) {
    if (remove_cgroup(leftover_cgroups[i]) != 0) continue;
    free(leftover_cgroups[i]);
    leftover_cgroups[i] = leftover_cgroups[--leftover_count];
  }
  next_sweep_ms = now_ms() + SWEEP_MS;
}

/* A job is done once it has exited and its output is at end: 'C' comes after 'X', always. */
static void finish_if_done(size_t index) {
  struct job *job = &jobs[index];
  if (!job->exited || job->out >= 0 || job->err >= 0) return;
  uint64_t totals[2] = {job->out_total, job->err_total};
  send_frame('C', job->id, totals, sizeof totals);
  if (job->cgroup) remove_or_keep_cgroup(job->cgroup);
  jobs[index] = jobs[--job_count];
}

static void reaped(size_t index, int status) {
  struct job *job = &jobs[index];
  job->exited = 1;
  if (job->pidfd >= 0) close(job->pidfd);
  job->pidfd = -1;
  send_int('X', job->id, status);
  finish_if_done(index);
}

/* The wait status that waitpid would have given for what waitid says. */
static int wait_status(const siginfo_t *info) {
  if (info->si_code == CLD_EXITED) return (info->si_status & 0xff) << 8;
  return (info->si_status & 0x7f) | (info->si_code == CLD_DUMPED ? 0x80 : 0);
}

/*
 * With pidfds: the job whose pidfd became readable has exited. waitid on the pidfd itself, so no
 * other child can be reaped by mistake; if even that fails, the exit is taken as seen (with no
 * status), or the pidfd would stay readable and spin the loop.
 */
static void reap_job(size_t index) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (syscall(SYS_waitid, P_PIDFD, jobs[index].pidfd, &info, WEXITED | WNOHANG, NULL) != 0) {
    reaped(index, -1);
  } else if (info.si_pid != 0) {
    reaped(index, wait_status(&info));
  }
}

static int write_text(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t written = write(fd, text, strlen(text));
  int saved = errno;
  close(fd);
  errno = saved;
  return written < 0 ? -1 : 0;
}

/* Moves the helper into a cgroup ("0" is the writer itself), so that a child it starts is born there. */
static int enter_cgroup(const char *directory) {
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/cgroup.procs", directory) >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return write_text(path, "0");
}

/*
 * A spawn request as the daemon encodes it (src/daemon/spawn-request.ts):
 * LIMIT \0 CGROUP \0 COMMAND \0 WORKDIR \0 then NAME=VALUE \0 ... The strings are used in place.
 */
static void spawn_job(uint32_t id, char *payload, size_t size) {
  char *end = payload + size;
  char *fields[4];
  char *cursor = payload;
  for (int i = 0; i < 4; i++) {
    if (cursor >= end || end[-1] != '\0') {
      send_frame('F', id, "malformed spawn request", 23);
      return;
    }
    fields[i] = cursor;
    cursor += strlen(cursor) + 1;
  }
  uint64_t limit = strtoull(fields[0], NULL, 10);
  const char *cgroup = fields[1], *command = fields[2], *workdir = fields[3];
  char cgroup_path[4096];
  if (*cgroup) {
    /* A name below the helper's own cgroup; with none to use, the process group alone. */
    int fits = cgroup_home && !strchr(cgroup, '/') && (size_t)snprintf(cgroup_path, sizeof cgroup_path, "%s/%s", cgroup_home, cgroup) < sizeof cgroup_path;
    cgroup = fits ? cgroup_path : "";
  }
  size_t env_count = 0;
  for (char *p = cursor; p < end; p += strlen(p) + 1) env_count++;
  char **envp = calloc(env_count + 1, sizeof(char *));
  if (!envp) die("calloc");
  for (size_t i = 0; i < env_count; i++, cursor += strlen(cursor) + 1) envp[i] = cursor;

  int out[2] = {-1, -1}, err[2] = {-1, -1};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  pid_t pid = -1;
  int rc = 0;
  const char *doing = "create pipes%s: %s";
  const char *subject = "";
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    rc = errno;
    goto done;
  }
  /* The pipes as stdio (dup2 clears close-on-exec), the workdir, and no other descriptor. */
  posix_spawn_file_actions_adddup2(&actions, dev_null, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  if (*workdir) posix_spawn_file_actions_addchdir_np(&actions, workdir);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (*cgroup) {
    subject = cgroup;
    doing = "enter cgroup %s: %s";
    if ((mkdir(cgroup, 0755) != 0 && errno != EEXIST) || enter_cgroup(cgroup) != 0) {
      rc = errno;
      goto done;
    }
  }
  /* `--`: a command that starts with a dash is a command, not an option of the shell. */
  char *argv[] = {"/bin/sh", "-c", "--", (char *)command, NULL};
  rc = posix_spawn(&pid, "/bin/sh", &actions, &spawn_attributes, argv, envp);
  /* Back home whatever happened: the next command must not start in this one's cgroup. */
  if (*cgroup && enter_cgroup(cgroup_home) != 0) die("cannot return to the helper's own cgroup");
  if (rc != 0) {
    doing = *workdir ? "spawn /bin/sh in %s: %s" : "spawn /bin/sh%s: %s";
    subject = workdir;
  }

done:
  posix_spawn_file_actions_destroy(&actions);
  free(envp);
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  int pidfd = -1;
  if (rc == 0 && use_pidfd) {
    /* Not reaped yet, so the pid cannot have been reused. */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
      /* Its exit could not be seen (out of file descriptors): the command goes, as if never started. */
      rc = errno;
      doing = "watch the command%s: %s";
      subject = "";
      kill(-pid, SIGKILL);
      waitpid(pid, NULL, 0);
    }
  }
  if (rc != 0) {
    if (out[0] >= 0) close(out[0]);
    if (err[0] >= 0) close(err[0]);
    if (*cgroup) rmdir(cgroup);
    send_error(id, doing, subject, rc);
    return;
  }
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  if (job_count == job_capacity) {
    job_capacity = job_capacity ? job_capacity * 2 : 64;
    jobs = realloc(jobs, job_capacity * sizeof(struct job));
    if (!jobs) die("realloc");
  }
  char *own = *cgroup ? strdup(cgroup) : NULL;
  if (*cgroup && !own) die("strdup");
  jobs[job_count++] = (struct job){id, pid, out[0], err[0], pidfd, 0, limit, 0, 0, own};
  send_int('P', id, pid);
}

static void release_job(uint32_t id) {
  for (size_t i = 0; i < job_count; i++) {
    if (jobs[i].id == id) {
      if (jobs[i].out >= 0) close(jobs[i].out);
      if (jobs[i].err >= 0) close(jobs[i].err);
      jobs[i].out = jobs[i].err = -1;
      finish_if_done(i);
      return;
    }
  }
}

/*
 * Signals a job's process group (posix_spawn made the shell a session leader); SIGKILL first ends
 * its cgroup, which holds also what left the group. Back to back for SIGKILL: one kill is not enough
 * for a fork bomb, whose members forked while the kernel walks the group escape it.
 */
static void signal_job(uint32_t id, const unsigned char *payload, size_t size) {
  int32_t signal_number;
  if (size < 4) return;
  memcpy(&signal_number, payload, 4);
  for (size_t i = 0; i < job_count; i++) {
    if (jobs[i].id != id) continue;
    if (signal_number == SIGKILL && jobs[i].cgroup) {
      char path[4200];
      snprintf(path, sizeof path, "%s/cgroup.kill", jobs[i].cgroup);
      write_text(path, "1");
    }
    for (int kills = signal_number == SIGKILL ? 100 : 1; kills > 0; kills--) {
      if (kill(-jobs[i].pid, signal_number) != 0) break;
    }
    return;
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
    if (frame[0] == 'S') spawn_job(id, (char *)frame + 5, length - 5);
    else if (frame[0] == 'R') release_job(id);
    else if (frame[0] == 'K') signal_job(id, frame + 5, length - 5);
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

/*
 * What every command starts with, whatever the helper has: its own session and process group (the
 * daemon signals the group), every signal at its default action and none blocked.
 */
static void init_spawn_attributes(void) {
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_init(&spawn_attributes);
  posix_spawnattr_setflags(&spawn_attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setsigdefault(&spawn_attributes, &all);
  posix_spawnattr_setsigmask(&spawn_attributes, &none);
}

/*
 * systemd's watchdog (WatchdogSec= in the command runner's unit): a helper that stops pinging
 * (a command sent it SIGSTOP, say) is ended by systemd, which a daemon of another user cannot do.
 */
static int notify_fd = -1;
static struct sockaddr_un notify_address;
static socklen_t notify_length;
static long long watchdog_every_ms, next_ping_ms;

/* $NOTIFY_SOCKET as an address: a path, or an abstract name (@name). 0 when unset or unusable. */
static int read_notify_socket(void) {
  const char *path = getenv("NOTIFY_SOCKET");
  size_t size = path ? strlen(path) : 0;
  if (size == 0 || size >= sizeof notify_address.sun_path || (*path != '/' && *path != '@')) return 0;
  notify_address.sun_family = AF_UNIX;
  memcpy(notify_address.sun_path, path, size);
  if (*path == '@') notify_address.sun_path[0] = '\0';
  notify_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + size);
  return 1;
}

static void init_watchdog(void) {
  const char *usec = getenv("WATCHDOG_USEC");
  if (!usec || !read_notify_socket()) return;
  watchdog_every_ms = strtoll(usec, NULL, 10) / 2000;
  if (watchdog_every_ms <= 0) return;
  notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

/*
 * --notify: the daemon's messages to systemd (sd_notify(3)), which Node cannot send itself, having
 * no AF_UNIX datagram sockets. Each message read from stdin, ended by a NUL, goes as one datagram
 * to $NOTIFY_SOCKET (so READY=1 and its STATUS= arrive together). Exits when stdin closes: the
 * daemon has gone. SIGTERM is ignored: systemd sends it to the whole unit on stop, and the daemon
 * drains after it, still pinging the watchdog through this helper until it ends.
 */
static int run_notifier(void) {
  if (!read_notify_socket()) {
    fprintf(stderr, "dffs-spawn --notify: NOTIFY_SOCKET is unset or not an absolute path or @name\n");
    return 1;
  }
  if (prctl(PR_SET_NAME, "dffs-notify") != 0) die("prctl");
  if (signal(SIGTERM, SIG_IGN) == SIG_ERR) die("signal");
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  char *message = NULL;
  size_t capacity = 0;
  ssize_t got;
  while ((got = getdelim(&message, &capacity, '\0', stdin)) > 0) {
    size_t size = message[got - 1] == '\0' ? (size_t)got - 1 : (size_t)got;
    if (size == 0) continue;
    if (sendto(fd, message, size, MSG_NOSIGNAL, (struct sockaddr *)&notify_address, notify_length) < 0) die("sendto NOTIFY_SOCKET");
  }
  if (ferror(stdin)) die("read");
  free(message);
  return 0;
}

static void ping_watchdog(void) {
  if (notify_fd < 0 || now_ms() < next_ping_ms) return;
  sendto(notify_fd, "WATCHDOG=1", 10, MSG_NOSIGNAL, (struct sockaddr *)&notify_address, notify_length);
  next_ping_ms = now_ms() + watchdog_every_ms;
}

/*
 * The helper's own cgroup in the cgroup v2 tree (/proc/self/cgroup, and the cgroup2 mount: at
 * /sys/fs/cgroup/unified on a hybrid host), if it may make cgroups there and end them; else NULL.
 */
static char *find_own_cgroup(void) {
  char line[4096], relative[4096] = "", mount[4096] = "";
  FILE *file = fopen("/proc/self/cgroup", "re");
  if (!file) return NULL;
  while (fgets(line, sizeof line, file)) {
    if (strncmp(line, "0::", 3) == 0) snprintf(relative, sizeof relative, "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
  }
  fclose(file);
  file = fopen("/proc/self/mountinfo", "re");
  if (!file) return NULL;
  while (!*mount && fgets(line, sizeof line, file)) {
    if (strstr(line, " - cgroup2 ") && sscanf(line, "%*s %*s %*s %*s %4095s", mount) != 1) *mount = '\0';
  }
  fclose(file);
  char path[8192], kill_file[8220];
  if (!*relative || !*mount || (size_t)snprintf(path, sizeof path, "%s%s", mount, strcmp(relative, "/") == 0 ? "" : relative) >= 4096) return NULL;
  snprintf(kill_file, sizeof kill_file, "%s/cgroup.kill", path);
  if (access(path, W_OK) != 0 || access(kill_file, F_OK) != 0) return NULL;
  return strdup(path);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--notify") == 0) return run_notifier();
  int no_pidfd = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--no-pidfd") == 0) no_pidfd = 1;
    else if (strcmp(argv[i], "--own-cgroup") == 0) cgroup_home = find_own_cgroup();
  }
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  /*
   * An inherited SIG_IGN for SIGCHLD would reap commands before their status is read. SIGPIPE at
   * its default ends the helper when the daemon is gone.
   */
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  init_spawn_attributes();
  /*
   * Not dumpable: commands run as the helper's user, and must not trace it or read its memory
   * (other commands' output and frames). posix_spawn's exec makes each command dumpable again.
   */
  prctl(PR_SET_DUMPABLE, 0);
  init_watchdog();
  dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (dev_null < 0) die("/dev/null");
  int probe = no_pidfd ? -1 : (int)syscall(SYS_pidfd_open, getpid(), 0);
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
    ping_watchdog();
    long long wait_ms = output_used ? flush_deadline_ms - now_ms() : -1;
    /* Idle, it wakes for the next ping; with output waiting it wakes sooner anyway. */
    if (notify_fd >= 0 && !output_used) wait_ms = next_ping_ms > now_ms() ? next_ping_ms - now_ms() : 0;
    if (leftover_count > 0) {
      long long sweep_in = next_sweep_ms - now_ms();
      if (sweep_in <= 0) sweep_leftover_cgroups();
      else if (wait_ms < 0 || sweep_in < wait_ms) wait_ms = sweep_in;
    }
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
