/* The whole-process floor of `mstate save` and `mstate load`: a C program
 * making only the system calls the operation needs on mstate's layout,
 * with no other logic (no JSON, no checks). Built by mstate-bench with
 * `cc -O2`; see crates/bench/src/rivals.rs.
 *
 *   floor save ROOT < STATE   read the state from stdin; lock (mkdir a
 *                             temporary directory, three files, renameat2
 *                             NOREPLACE); read the state file; prune one
 *                             backup (unlink) and link the state file into
 *                             backups/, fsync backups/; write the temporary
 *                             file, fdatasync, rename it over the state
 *                             file, fsync active/; append an event (open,
 *                             flock, fstat, pread, write, unlock,
 *                             fdatasync); release the lock; print "1".
 *   floor load ROOT           read the state file and write it to stdout.
 *
 * The new state file's bytes are the old file's (the benchmark saves the
 * same state again, so they have the size mstate writes).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char path[4096], path2[4096];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static const char *at(const char *root, const char *rel) {
    snprintf(path, sizeof path, "%s/%s", root, rel);
    return path;
}

static void write_all(int fd, const char *b, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) die("write");
        b += w;
        n -= (size_t)w;
    }
}

static char *read_fd(int fd, size_t *len) {
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat");
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 65536, n = 0;
    char *b = malloc(cap);
    if (!b) die("malloc");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap);
            if (!b) die("realloc");
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) die("read");
        if (r == 0) break;
        n += (size_t)r;
    }
    *len = n;
    return b;
}

static void create_file(const char *p, const char *bytes) {
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) die(p);
    write_all(fd, bytes, strlen(bytes));
    close(fd);
}

static void sync_dir(const char *p) {
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die(p);
    if (fsync(fd) < 0) die("fsync");
    close(fd);
}

static int save(const char *root) {
    size_t in_len;
    char *input = read_fd(0, &in_len);
    (void)input;
    char tmp[4096], lock[4096];
    int pid = getpid();
    /* lock acquire */
    snprintf(tmp, sizeof tmp, "%s/.locks/.tmp-floor-%d", root, pid);
    snprintf(lock, sizeof lock, "%s/.locks/m.lock", root);
    if (mkdir(tmp, 0755) < 0) die("mkdir");
    snprintf(path2, sizeof path2, "%s/pid", tmp);
    create_file(path2, "1\n");
    snprintf(path2, sizeof path2, "%s/acquired", tmp);
    create_file(path2, "2026-11-24T21:03:37.123456Z\n");
    snprintf(path2, sizeof path2, "%s/info.json", tmp);
    create_file(path2, "{\"pid\":1,\"host\":\"h\",\"operation\":\"save\"}\n");
    if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, lock, 1 /* RENAME_NOREPLACE */) < 0)
        die("renameat2");
    /* read the state file */
    int fd = open(at(root, "active/m.json"), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open state");
    size_t len;
    char *state = read_fd(fd, &len);
    close(fd);
    /* prune one backup, link the outgoing file, sync backups/ */
    unlink(at(root, "backups/m-floor.json"));
    snprintf(path2, sizeof path2, "%s/backups/m-floor.json", root);
    if (linkat(AT_FDCWD, at(root, "active/m.json"), AT_FDCWD, path2, 0) < 0) die("linkat");
    sync_dir(at(root, "backups"));
    /* durable replace */
    snprintf(path2, sizeof path2, "%s/active/m.json.tmp.%d", root, pid);
    fd = open(path2, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) die("open temp");
    write_all(fd, state, len);
    if (fdatasync(fd) < 0) die("fdatasync");
    close(fd);
    if (rename(path2, at(root, "active/m.json")) < 0) die("rename");
    sync_dir(at(root, "active"));
    /* event append */
    fd = open(at(root, "events/milestone-m.jsonl"), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) die("open log");
    if (flock(fd, LOCK_EX) < 0) die("flock");
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat");
    char tail[4096];
    off_t from = st.st_size > 4096 ? st.st_size - 4096 : 0;
    if (pread(fd, tail, sizeof tail, from) < 0) die("pread");
    const char *line =
        "{\"timestamp\":\"2026-11-24T21:03:37.123456Z\",\"milestone_id\":\"m\",\"session_id\":\"s\","
        "\"event_type\":\"state_saved\",\"data\":{\"revision\":1},\"pid\":1,\"user\":\"u\",\"seq\":1,\"host\":\"h\"}\n";
    write_all(fd, line, strlen(line));
    flock(fd, LOCK_UN);
    if (fdatasync(fd) < 0) die("fdatasync");
    close(fd);
    /* lock release */
    snprintf(path2, sizeof path2, "%s/.locks/.trash-floor-%d", root, pid);
    if (rename(lock, path2) < 0) die("rename lock");
    char f[4096];
    const char *names[3] = {"pid", "acquired", "info.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(f, sizeof f, "%s/%s", path2, names[i]);
        if (unlink(f) < 0) die("unlink");
    }
    if (rmdir(path2) < 0) die("rmdir");
    write_all(1, "1\n", 2);
    return 0;
}

static int load(const char *root) {
    int fd = open(at(root, "active/m.json"), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open state");
    size_t len;
    char *state = read_fd(fd, &len);
    close(fd);
    write_all(1, state, len);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor save|load ROOT\n");
        return 2;
    }
    if (strcmp(argv[1], "save") == 0) return save(argv[2]);
    if (strcmp(argv[1], "load") == 0) return load(argv[2]);
    fprintf(stderr, "floor: unknown operation %s\n", argv[1]);
    return 2;
}
