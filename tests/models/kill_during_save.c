/* Preloaded into a process (LD_PRELOAD; the `kill_during_save` fixture of
 * tests/models/conftest.py builds it): SIGKILLs the process at one point of
 * TensorFlow's write of its KILL_AT_SAVE-th checkpoint
 * (1-based; a save is recognised by the `<prefix>_temp/` folder it writes into).
 * KILL_AT picks the point:
 *   temp   halfway through the first write of a file in `<prefix>_temp/`
 *   data   just after `<prefix>.data-*` is renamed into place, before the index exists
 *   index  halfway through the first write of `<prefix>.index`
 *   state  once `<prefix>.index` is closed, before the `checkpoint` file names it
 * It wraps fopen, fwrite, fclose and rename, the calls TensorFlow's POSIX file system
 * makes; everything else passes through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char current[4096];  /* prefix of the save in progress */
static int saves;           /* saves seen so far */
static FILE *watched;       /* the stream whose first write kills */
static int index_closed;    /* the armed save's index is complete */

static void die(void) {
  kill(getpid(), SIGKILL);
}

static const char *point(void) {
  const char *at = getenv("KILL_AT");
  return at ? at : "";
}

/* True while the save numbered KILL_AT_SAVE is in progress. */
static int armed(void) {
  const char *target = getenv("KILL_AT_SAVE");
  return target && saves == atoi(target);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Counts a save when `path` lies in a `<prefix>_temp/` folder of a new prefix. */
static void note_save(const char *path) {
  const char *temp = strstr(path, "_temp/");
  size_t length;
  if (!temp) return;
  length = (size_t)(temp - path);
  if (length >= sizeof(current)) return;
  if (strncmp(current, path, length) == 0 && current[length] == '\0') return;
  memcpy(current, path, length);
  current[length] = '\0';
  saves++;
  index_closed = 0;
}

FILE *fopen(const char *path, const char *mode) {
  static FILE *(*real)(const char *, const char *);
  FILE *stream;
  char index[sizeof(current) + 8];
  if (!real) real = dlsym(RTLD_NEXT, "fopen");
  stream = real(path, mode);
  if (!stream || !strchr(mode, 'w')) return stream;
  note_save(path);
  if (!armed()) return stream;
  snprintf(index, sizeof(index), "%s.index", current);
  if ((strcmp(point(), "temp") == 0 && strstr(path, "_temp/") && !watched) ||
      (strcmp(point(), "index") == 0 && strcmp(path, index) == 0) ||
      (strcmp(point(), "state") == 0 && strcmp(path, index) == 0))
    watched = stream;
  return stream;
}

FILE *fopen64(const char *path, const char *mode) {
  return fopen(path, mode);
}

size_t fwrite(const void *data, size_t size, size_t count, FILE *stream) {
  static size_t (*real)(const void *, size_t, size_t, FILE *);
  if (!real) real = dlsym(RTLD_NEXT, "fwrite");
  if (stream == watched && strcmp(point(), "state") != 0 && size * count > 1) {
    real(data, 1, size * count / 2, stream);
    fflush(stream);
    die();
  }
  return real(data, size, count, stream);
}

int fclose(FILE *stream) {
  static int (*real)(FILE *);
  if (!real) real = dlsym(RTLD_NEXT, "fclose");
  if (stream == watched && strcmp(point(), "state") == 0) {
    index_closed = 1;
    watched = NULL;
  }
  return real(stream);
}

int rename(const char *from, const char *to) {
  static int (*real)(const char *, const char *);
  int result;
  char data[sizeof(current) + 8];
  if (!real) real = dlsym(RTLD_NEXT, "rename");
  if (armed() && strcmp(point(), "state") == 0 && index_closed &&
      ends_with(to, "/checkpoint"))
    die();
  result = real(from, to);
  snprintf(data, sizeof(data), "%s.data-", current);
  if (armed() && strcmp(point(), "data") == 0 && strncmp(to, data, strlen(data)) == 0)
    die();
  return result;
}
