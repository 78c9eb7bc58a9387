/*
 * dffs-spawn.node: dffs-spawn's vfork inside the daemon, as a Node-API addon. A command's exit
 * and output are watched in the daemon's own event loop (libuv), through a pidfd and the pipes,
 * so no helper process stands between the command and the reply: one process wake-up less per
 * command, which is what one request at a time is made of (README, Performance).
 *
 * From JavaScript (src/daemon/spawn-addon.ts):
 *   init(onExited, onClosed)               once; throws without pidfds (Linux < 5.3)
 *   spawn(id, request: Buffer) -> pid      request as in spawn-shell.h; throws if it cannot start
 *   release(id)                            stop reading the command's output: onClosed now
 *   onExited(id, waitStatus)               the shell exited, its output is still open
 *   onClosed(id, waitStatus | -1, stdout, stderr, stdoutTotal, stderrTotal)
 *                                          the output is at its end (or released); the status
 *                                          when the exit comes with it, else -1. Each stream's
 *                                          first LIMIT bytes are kept; the rest is only counted.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <sys/wait.h>
#include <uv.h>

#include "spawn-shell.h"

#define READ_CHUNK 65536
/* Reads per wake-up of one stream: a command that prints without end does not hold the loop. */
#define READS_PER_TURN 16
/*
 * The pipes are watched only once a command has run this long, or has exited and left them open.
 * Until then its output waits in them (64 KiB each), and is read at the exit: a short command
 * costs the daemon one wake-up and one watched descriptor, not three.
 */
#define OUTPUT_WATCH_DELAY_MS 5

struct stream {
  int fd; /* -1 once at end */
  uv_poll_t *poll;
  uint64_t total;
  char *kept;
  size_t kept_size, kept_capacity;
};

struct job {
  struct job *next;
  struct addon *addon;
  uint32_t id;
  pid_t pid;
  int pidfd; /* -1 once reaped */
  uv_poll_t *exit_poll;
  uv_timer_t *output_timer; /* until the pipes are watched */
  struct stream out, err;
  uint64_t limit;
  int exited, status;
  int exit_reported; /* onExited was called */
  int closed;        /* onClosed was called, or the daemon released the job: nothing more goes to it */
  int open_handles;  /* the job is freed when the last of its uv handles has closed */
};

struct addon {
  napi_env env;
  uv_loop_t *loop;
  napi_ref on_exited, on_closed;
  napi_async_context context;
  struct job *jobs;
};

static int dev_null = -1;
/* What the daemon ignores (Node ignores SIGPIPE): commands get every signal at its default. */
static sigset_t ignored_signals;

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static void on_handle_closed(uv_handle_t *handle) {
  struct job *job = handle->data;
  free(handle);
  if (--job->open_handles == 0) {
    free(job->out.kept);
    free(job->err.kept);
    free(job);
  }
}

static void close_poll(uv_poll_t **poll) {
  if (!*poll) return;
  uv_poll_stop(*poll);
  uv_close((uv_handle_t *)*poll, on_handle_closed);
  *poll = NULL;
}

static void close_timer(uv_timer_t **timer) {
  if (!*timer) return;
  uv_timer_stop(*timer);
  uv_close((uv_handle_t *)*timer, on_handle_closed);
  *timer = NULL;
}

static void close_stream(struct stream *stream) {
  close_poll(&stream->poll);
  if (stream->fd >= 0) close(stream->fd);
  stream->fd = -1;
}

static void unlink_job(struct job *job) {
  for (struct job **link = &job->addon->jobs; *link; link = &(*link)->next) {
    if (*link == job) {
      *link = job->next;
      return;
    }
  }
}

static struct job *find_job(struct addon *addon, uint32_t id) {
  for (struct job *job = addon->jobs; job; job = job->next) {
    if (job->id == id && !job->closed) return job;
  }
  return NULL;
}

/* Keeps what fits under the limit, counts it all. */
static int keep(struct job *job, struct stream *stream, const char *data, size_t size) {
  uint64_t before = stream->total;
  stream->total += size;
  if (before >= job->limit) return 0;
  uint64_t room = job->limit - before;
  size_t wanted = size < room ? size : (size_t)room;
  if (stream->kept_capacity - stream->kept_size < wanted) {
    size_t capacity = stream->kept_capacity ? stream->kept_capacity : READ_CHUNK;
    while (capacity - stream->kept_size < wanted) capacity *= 2;
    if (capacity > job->limit) capacity = (size_t)job->limit;
    char *grown = realloc(stream->kept, capacity);
    if (!grown) return -1;
    stream->kept = grown;
    stream->kept_capacity = capacity;
  }
  memcpy(stream->kept + stream->kept_size, data, wanted);
  stream->kept_size += wanted;
  return 0;
}

/* Reads what a stream has now (up to READS_PER_TURN reads); at its end, closes it. */
static void read_stream(struct job *job, struct stream *stream) {
  char buffer[READ_CHUNK];
  for (int reads = 0; stream->fd >= 0 && reads < READS_PER_TURN; reads++) {
    ssize_t got = read(stream->fd, buffer, sizeof buffer);
    if (got > 0) {
      if (keep(job, stream, buffer, (size_t)got) == 0) continue;
    } else if (got < 0 && errno == EINTR) {
      continue;
    } else if (got < 0 && errno == EAGAIN) {
      return;
    }
    close_stream(stream);
  }
}

/*
 * Calls onClosed once the command has exited and its output is at its end, or when released; else
 * onExited, once, when it has exited. `from_loop`: from libuv, else inside a call from JavaScript.
 */
static void emit(struct job *job, int from_loop, int released) {
  struct addon *addon = job->addon;
  napi_env env = addon->env;
  int closing = released || (job->exited && job->out.fd < 0 && job->err.fd < 0);
  if (!closing && (!job->exited || job->exit_reported)) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[6], callback, receiver, result;
  void *unused;
  static char empty;
  int status = job->exited && !job->exit_reported ? job->status : -1;
  job->exit_reported = job->exited;
  napi_create_uint32(env, job->id, &argv[0]);
  napi_create_int32(env, status, &argv[1]);
  size_t argc = 2;
  if (closing) {
    job->closed = 1;
    unlink_job(job);
    napi_create_buffer_copy(env, job->out.kept_size, job->out.kept ? job->out.kept : &empty, &unused, &argv[2]);
    napi_create_buffer_copy(env, job->err.kept_size, job->err.kept ? job->err.kept : &empty, &unused, &argv[3]);
    napi_create_double(env, (double)job->out.total, &argv[4]);
    napi_create_double(env, (double)job->err.total, &argv[5]);
    argc = 6;
  }
  napi_get_reference_value(env, closing ? addon->on_closed : addon->on_exited, &callback);
  napi_get_global(env, &receiver);
  if (!from_loop) {
    /* An exception goes on to the JavaScript that called. */
    napi_call_function(env, receiver, callback, argc, argv, &result);
  } else if (napi_make_callback(env, addon->context, receiver, callback, argc, argv, &result) == napi_pending_exception) {
    /* As from any event handler: to process.on('uncaughtException'), or the end of the process. */
    napi_value exception;
    if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
  }
  napi_close_handle_scope(env, scope);
}

static int start_poll(struct job *job, uv_poll_t **poll, int fd, uv_poll_cb callback) {
  *poll = malloc(uv_handle_size(UV_POLL));
  if (!*poll) return -1;
  if (uv_poll_init(job->addon->loop, *poll, fd) != 0) {
    free(*poll);
    *poll = NULL;
    return -1;
  }
  (*poll)->data = job;
  job->open_handles++;
  uv_poll_start(*poll, UV_READABLE, callback);
  return 0;
}

static void on_output(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  struct job *job = poll->data;
  read_stream(job, poll == job->out.poll ? &job->out : &job->err);
  if (!job->closed) emit(job, 1, 0);
}

/* Watches the pipes still open; one that cannot be watched is closed, as at its end. */
static void watch_output(struct job *job) {
  close_timer(&job->output_timer);
  struct stream *streams[] = {&job->out, &job->err};
  for (int i = 0; i < 2; i++) {
    if (streams[i]->fd >= 0 && !streams[i]->poll && start_poll(job, &streams[i]->poll, streams[i]->fd, on_output) != 0) close_stream(streams[i]);
  }
}

static void on_output_timer(uv_timer_t *timer) {
  watch_output(timer->data);
}

static void on_exit_readable(uv_poll_t *poll, int poll_status, int events) {
  (void)poll_status;
  (void)events;
  struct job *job = poll->data;
  int status;
  if (waitpid(job->pid, &status, WNOHANG) != job->pid) return;
  close_poll(&job->exit_poll);
  close(job->pidfd);
  job->pidfd = -1;
  if (job->closed) return;
  job->exited = 1;
  job->status = status;
  /* The output written before the exit, and its end when no background child holds the pipes: one call. */
  read_stream(job, &job->out);
  read_stream(job, &job->err);
  /* A background child holds a pipe: its end is awaited (release() cuts it short). */
  watch_output(job);
  emit(job, 1, 0);
}

static napi_value spawn_command(napi_env env, napi_callback_info info) {
  struct addon *addon;
  size_t argc = 2;
  napi_value argv[2];
  uint32_t id;
  char *payload;
  size_t size;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&addon) != napi_ok || argc < 2 || napi_get_value_uint32(env, argv[0], &id) != napi_ok ||
      napi_get_buffer_info(env, argv[1], (void **)&payload, &size) != napi_ok) {
    return throw_error(env, "spawn(id, request: Buffer)");
  }
  struct job *job = calloc(1, sizeof *job);
  if (!job) return throw_error(env, "cannot start the command: out of memory");
  /* Signals blocked around vfork: no handler of the daemon's may run in the child while it shares the daemon's memory. */
  struct started_shell shell;
  char message[512];
  if (start_shell(payload, size, dev_null, &ignored_signals, 1, 1, &shell, message, sizeof message) != 0) {
    free(job);
    return throw_error(env, message);
  }
  *job = (struct job){.addon = addon, .id = id, .pid = shell.pid, .pidfd = shell.pidfd, .limit = shell.limit};
  job->out.fd = shell.out;
  job->err.fd = shell.err;
  job->output_timer = malloc(uv_handle_size(UV_TIMER));
  if (job->output_timer) {
    uv_timer_init(addon->loop, job->output_timer);
    job->output_timer->data = job;
    job->open_handles++;
    uv_timer_start(job->output_timer, on_output_timer, OUTPUT_WATCH_DELAY_MS, 0);
  } else {
    watch_output(job);
  }
  if (start_poll(job, &job->exit_poll, shell.pidfd, on_exit_readable) != 0) {
    /* Without a way to see the exit, wait for it now rather than leave a zombie nobody reaps. */
    kill(-shell.pid, SIGKILL);
    waitpid(shell.pid, NULL, 0);
    close(shell.pidfd);
    job->pidfd = -1;
    close_timer(&job->output_timer);
    close_stream(&job->out);
    close_stream(&job->err);
    if (job->open_handles == 0) free(job);
    return throw_error(env, "cannot watch the command: out of memory");
  }
  job->next = addon->jobs;
  addon->jobs = job;
  napi_value result;
  napi_create_int32(env, shell.pid, &result);
  return result;
}

static napi_value release_command(napi_env env, napi_callback_info info) {
  struct addon *addon;
  size_t argc = 1;
  napi_value argv[1], result;
  uint32_t id;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&addon) != napi_ok || argc < 1 || napi_get_value_uint32(env, argv[0], &id) != napi_ok) {
    return throw_error(env, "release(id)");
  }
  struct job *job = find_job(addon, id);
  napi_get_boolean(env, job != NULL, &result);
  if (!job) return result;
  close_timer(&job->output_timer);
  /* What the pipes hold now is the command's output so far. */
  read_stream(job, &job->out);
  read_stream(job, &job->err);
  close_stream(&job->out);
  close_stream(&job->err);
  /* The exit is still watched, if it has not come yet: the command is reaped, not reported. */
  emit(job, 0, 1);
  return result;
}

static napi_value init(napi_env env, napi_callback_info info) {
  struct addon *addon;
  size_t argc = 2;
  napi_value argv[2], name;
  napi_valuetype types[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&addon) != napi_ok || argc < 2 || napi_typeof(env, argv[0], &types[0]) != napi_ok ||
      napi_typeof(env, argv[1], &types[1]) != napi_ok || types[0] != napi_function || types[1] != napi_function) {
    return throw_error(env, "init(onExited, onClosed)");
  }
  if (addon->on_closed) return throw_error(env, "init() was called already");
  int probe = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (probe < 0) {
    char message[256];
    snprintf(message, sizeof message, "no pidfd_open (Linux 5.3+): %s", strerror(errno));
    return throw_error(env, message);
  }
  close(probe);
  if (dev_null < 0) dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (dev_null < 0) return throw_error(env, strerror(errno));
  sigemptyset(&ignored_signals);
  for (int number = 1; number < NSIG; number++) {
    struct sigaction action;
    if (sigaction(number, NULL, &action) == 0 && action.sa_handler == SIG_IGN) sigaddset(&ignored_signals, number);
  }
  if (napi_get_uv_event_loop(env, &addon->loop) != napi_ok || napi_create_string_utf8(env, "dffs-spawn", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &addon->context) != napi_ok || napi_create_reference(env, argv[0], 1, &addon->on_exited) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &addon->on_closed) != napi_ok) {
    return throw_error(env, "cannot set up dffs-spawn.node");
  }
  return NULL;
}

static void free_addon(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

NAPI_MODULE_INIT() {
  struct addon *addon = calloc(1, sizeof *addon);
  if (!addon) return NULL;
  addon->env = env;
  napi_set_instance_data(env, addon, free_addon, NULL);
  const struct {
    const char *name;
    napi_callback function;
  } functions[] = {{"init", init}, {"spawn", spawn_command}, {"release", release_command}};
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value function;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].function, addon, &function);
    napi_set_named_property(env, exports, functions[i].name, function);
  }
  return exports;
}
