/*
 * pgtest.c - see pgtest.h.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pgtest.h"

#define START_TIMEOUT_MS 60000 /* initdb + start, under ASan on a busy machine */
#define FAST_STOP_MS 15000     /* SIGINT (fast shutdown), then SIGQUIT */
#define QUIT_STOP_MS 5000      /* SIGQUIT (immediate shutdown), then SIGKILL */
#define START_ATTEMPTS 3       /* a free port can be taken before postgres binds it */

/* The supervisor's exit codes. */
enum {
	SUP_CLEAN = 0,   /* server shut down cleanly, directory removed */
	SUP_SETUP = 2,   /* could not prepare (fds, paths) */
	SUP_INITDB = 3,  /* initdb failed */
	SUP_EXITED = 4,  /* postgres exited by itself (e.g. its port was taken) */
	SUP_UNCLEAN = 5, /* postgres did not exit 0 on shutdown */
};

struct runas {
	bool drop; /* switch to uid/gid in initdb's and postgres's processes */
	uid_t uid;
	gid_t gid;
	char name[32];
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void seterr(struct pgtest *pg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pg->err, sizeof pg->err, fmt, ap);
	va_end(ap);
}

/* ---- finding the server binaries ---- */

static bool has_server(const char *dir)
{
	char p[512];
	snprintf(p, sizeof p, "%s/initdb", dir);
	if (access(p, X_OK) != 0)
		return false;
	snprintf(p, sizeof p, "%s/postgres", dir);
	return access(p, X_OK) == 0;
}

static bool use_bindir(struct pgtest *pg, const char *dir)
{
	if (!dir || !*dir || strlen(dir) >= sizeof pg->bindir || !has_server(dir))
		return false;
	snprintf(pg->bindir, sizeof pg->bindir, "%s", dir);
	return true;
}

static int find_bindir(struct pgtest *pg)
{
	const char *env = getenv("PGTEST_BINDIR");
	if (env && *env) {
		if (use_bindir(pg, env))
			return 0;
		seterr(pg, "PGTEST_BINDIR=%s holds no initdb and postgres", env);
		return -1;
	}
	/* Debian's pg_config (libpq-dev) names its major version's bindir,
	 * which has the server only if the same major's server is installed. */
	FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
	if (f) {
		char line[256] = "";
		if (fgets(line, sizeof line, f))
			line[strcspn(line, "\r\n")] = 0;
		pclose(f);
		if (use_bindir(pg, line))
			return 0;
	}
	/* Debian keeps each major version's server off the PATH: take the newest. */
	glob_t g;
	if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
		long best = -1;
		const char *best_dir = NULL;
		for (size_t i = 0; i < g.gl_pathc; i++) {
			long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
			if (v > best && has_server(g.gl_pathv[i])) {
				best = v;
				best_dir = g.gl_pathv[i];
			}
		}
		bool ok = use_bindir(pg, best_dir);
		globfree(&g);
		if (ok)
			return 0;
	}
	const char *path = getenv("PATH");
	if (path) {
		char *copy = strdup(path), *save = NULL;
		for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
			if (use_bindir(pg, d)) {
				free(copy);
				return 0;
			}
		free(copy);
	}
	seterr(pg, "no PostgreSQL server binaries (initdb and postgres) found in PGTEST_BINDIR, "
	           "pg_config --bindir, /usr/lib/postgresql/*/bin or the PATH: run "
	           "`scripts/deps.sh test` (Debian package postgresql)");
	return -1;
}

/* ---- who runs the server ---- */

static int pick_user(struct pgtest *pg, struct runas *ra)
{
	memset(ra, 0, sizeof *ra);
	if (geteuid() != 0)
		return 0; /* initdb and postgres run as we do */
	const char *env = getenv("PGTEST_USER");
	const char *names[] = {"postgres", "nobody"};
	size_t n = 2;
	if (env && *env) {
		names[0] = env;
		n = 1;
	}
	for (size_t i = 0; i < n; i++) {
		struct passwd *pw = getpwnam(names[i]);
		if (pw && pw->pw_uid != 0 && strlen(names[i]) < sizeof ra->name) {
			ra->drop = true;
			ra->uid = pw->pw_uid;
			ra->gid = pw->pw_gid;
			snprintf(ra->name, sizeof ra->name, "%s", names[i]);
			return 0;
		}
	}
	seterr(pg,
	       "running as root, and initdb/postgres refuse root: no unprivileged user to run "
	       "them as (%s)",
	       env && *env ? "PGTEST_USER not found or root"
	                   : "neither postgres nor nobody exists");
	return -1;
}

/* ---- the supervisor (a forked copy of the test process; dprintf, not stdio,
 * as another thread of the test may have held a FILE lock at fork) ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		dprintf(2, "pgtest: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void dump_tail(const char *what, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	lseek(fd, end > 4000 ? end - 4000 : 0, SEEK_SET);
	char buf[4000];
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	dprintf(2, "pgtest: ---- %s (%s) ----\n", what, path);
	if (n > 0 && write(2, buf, (size_t)n) < 0) {
	}
	dprintf(2, "pgtest: ---- end of %s ----\n", what);
}

/* Forks and execs argv[0] with stdout/stderr appended to log, as ra's user,
 * with deathsig sent to it when this (single-threaded) process dies. */
static pid_t spawn(const struct runas *ra, const char *log, int deathsig, char *const argv[])
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	if (ra->drop && (setgroups(1, &ra->gid) != 0 || setgid(ra->gid) != 0 ||
	                 setuid(ra->uid) != 0 || geteuid() != ra->uid)) {
		dprintf(2, "pgtest: cannot switch to user %s: %s\n", ra->name, strerror(errno));
		_exit(126);
	}
	/* After setuid: a change of credentials clears the parent-death signal. */
	if (deathsig && (prctl(PR_SET_PDEATHSIG, deathsig) != 0 || getppid() != parent))
		_exit(125);
	/* The supervisor ignores the terminal's signals; ignored dispositions and
	 * the mask survive exec, so hand the server the defaults. */
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		dprintf(2, "pgtest: cannot open %s: %s\n", log, strerror(errno));
		_exit(126);
	}
	dup2(fd, 1);
	dup2(fd, 2);
	execv(argv[0], argv);
	dprintf(2, "pgtest: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Waits up to ms for pid; returns whether it was reaped (status in *st). */
static bool reap_within(pid_t pid, int *st, long ms)
{
	double deadline = now_ms() + ms;
	for (;;) {
		pid_t r = waitpid(pid, st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return true;
		if (now_ms() > deadline)
			return false;
		sleep_ms(10);
	}
}

static int run_cp(const char *src, const char *dst, const char *log)
{
	static const struct runas self; /* as the supervisor: root keeps the owner */
	char *argv[] = {"/bin/cp", "-a", (char *)src, (char *)dst, NULL};
	pid_t pid = spawn(&self, log, SIGKILL, argv);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return 0;
}

/* Keeps a copy of a fresh initdb result as tmpl/data for the next starts:
 * copied into a private directory, then renamed into place, so a template
 * is complete or absent (two tests racing: one rename wins). Best effort. */
static void cache_store(const char *data, const char *tmpl, const char *log)
{
	char dir[300], staging[320], dst[340];
	snprintf(dir, sizeof dir, "%s", tmpl);
	*strrchr(dir, '/') = 0;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return;
	snprintf(staging, sizeof staging, "%s.XXXXXX", tmpl);
	if (!mkdtemp(staging))
		return;
	snprintf(dst, sizeof dst, "%s/data", staging);
	if (run_cp(data, dst, log) != 0 || rename(staging, tmpl) != 0)
		rm_tree(staging);
}

static int close_fds_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, 0) == 0)
		return 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			int fd = atoi(e->d_name);
			if (fd >= lowfd && fd != self)
				close(fd);
		}
	closedir(d);
	return 0;
}

static _Noreturn void supervise(const struct pgtest *pg, const struct runas *ra, const char *tmpl,
                                int lifeline)
{
	prctl(PR_SET_NAME, "pgtest-sup");
	/* Ctrl-C or ctest's SIGTERM for the test reach us too: the lifeline's EOF
	 * is what stops us, so the directory is removed in every case. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);

	/* Keep only stdio and the lifeline: another pgtest's lifeline or a
	 * test's listening socket must not stay open in us or the server. */
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(lifeline, 3) < 0 || close_fds_from(4) != 0 ||
	    fcntl(3, F_SETFD, FD_CLOEXEC) != 0) {
		dprintf(2, "pgtest: supervisor setup: %s\n", strerror(errno));
		rm_tree(pg->dir);
		_exit(SUP_SETUP);
	}
	lifeline = 3;

	char initdb[300], postgres[300], data[200], ilog[200], cplog[200], plog[200], port[16];
	snprintf(initdb, sizeof initdb, "%s/initdb", pg->bindir);
	snprintf(postgres, sizeof postgres, "%s/postgres", pg->bindir);
	snprintf(data, sizeof data, "%s/data", pg->dir);
	snprintf(ilog, sizeof ilog, "%s/initdb.log", pg->dir);
	snprintf(cplog, sizeof cplog, "%s/cp.log", pg->dir); /* root's, as cp runs as we do */
	snprintf(plog, sizeof plog, "%s/postgres.log", pg->dir);
	snprintf(port, sizeof port, "%d", pg->port);

	char user[40], cached[320], cached_version[340];
	snprintf(user, sizeof user, "%s", pg->user);
	snprintf(cached, sizeof cached, "%s/data", tmpl);
	snprintf(cached_version, sizeof cached_version, "%s/PG_VERSION", cached);
	int st = 0;
	if (*tmpl && access(cached_version, F_OK) == 0 && run_cp(cached, data, cplog) == 0) {
		/* initdb's result of an earlier start: copied, not made again */
	} else {
		rm_tree(data); /* a partial copy, if any */
		/* Trust for local and 127.0.0.1/::1 connections (initdb's
		 * pg_hba.conf), UTF8 with the C locale (no locale package
		 * needed), no fsync, 1 MB WAL segments (28 MB to copy for the
		 * next start, not 39). Change INITDB_KEY with these. */
		char *iargv[] = {initdb, "-D",         data,        "-U",
		                 user,   "-A",         "trust",     "-E",
		                 "UTF8", "--locale=C", "--no-sync", "--wal-segsize=1",
		                 NULL};
		if (pg->durable)
			iargv[11] = NULL; /* initdb's default WAL segments (16 MB) */
		pid_t ipid = spawn(ra, ilog, SIGKILL, iargv);
		if (ipid < 0 || waitpid(ipid, &st, 0) != ipid || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			dprintf(2, "pgtest: initdb failed (status %d)\n", st);
			dump_tail("initdb output", ilog);
			rm_tree(pg->dir);
			_exit(SUP_INITDB);
		}
		if (*tmpl)
			cache_store(data, tmpl, cplog);
	}

	/* In the foreground, as our child: no pg_ctl, whose server daemonises
	 * away from any parent-death signal. Durability off: a test server. */
	char *pargv[13 + 6 + 2 * 8 + 1] = {postgres,
	                                   "-D",
	                                   data,
	                                   "-p",
	                                   port,
	                                   "-k",
	                                   (char *)pg->dir,
	                                   "-c",
	                                   "listen_addresses=127.0.0.1",
	                                   "-c",
	                                   "logging_collector=off"};
	int na = 11;
	if (!pg->durable) {
		char *fast[] = {"-c", "fsync=off", "-c", "synchronous_commit=off",
		                "-c", "full_page_writes=off"};
		for (size_t i = 0; i < sizeof fast / sizeof *fast; i++)
			pargv[na++] = fast[i];
	}
	for (int i = 0; i < 8 && pg->settings[i]; i++) {
		pargv[na++] = "-c";
		pargv[na++] = (char *)pg->settings[i];
	}
	pargv[na] = NULL;
	pid_t ppid = spawn(ra, plog, SIGQUIT, pargv);
	if (ppid < 0) {
		rm_tree(pg->dir);
		_exit(SUP_SETUP);
	}
	for (;;) {
		struct pollfd p = {.fd = lifeline, .events = POLLIN};
		int r = poll(&p, 1, 100);
		if (r > 0) {
			char buf[64];
			ssize_t n = read(lifeline, buf, sizeof buf);
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				break; /* pgtest_stop, or the test process is gone */
			/* pgtest_server_down / _up: 'D' stops the server (fast
			 * shutdown, the data stays), 'U' starts it again. */
			for (ssize_t i = 0; i < n; i++) {
				if (buf[i] == 'D' && ppid > 0) {
					kill(ppid, SIGINT);
					if (!reap_within(ppid, &st, FAST_STOP_MS)) {
						kill(ppid, SIGQUIT);
						if (!reap_within(ppid, &st, QUIT_STOP_MS)) {
							kill(ppid, SIGKILL);
							waitpid(ppid, &st, 0);
						}
					}
					ppid = 0;
				} else if (buf[i] == 'U' && ppid <= 0) {
					ppid = spawn(ra, plog, SIGQUIT, pargv);
					if (ppid < 0) {
						rm_tree(pg->dir);
						_exit(SUP_SETUP);
					}
				}
			}
		}
		if (ppid <= 0)
			continue;
		if (waitpid(ppid, &st, WNOHANG) == ppid) {
			dprintf(2, "pgtest: postgres exited by itself (status %d)\n", st);
			dump_tail("postgres log", plog);
			rm_tree(pg->dir);
			_exit(SUP_EXITED);
		}
	}
	if (ppid <= 0) {
		rm_tree(pg->dir); /* down (pgtest_server_down) when stopped */
		_exit(SUP_CLEAN);
	}
	kill(ppid, SIGINT);
	if (!reap_within(ppid, &st, FAST_STOP_MS)) {
		dprintf(2, "pgtest: postgres still up %d ms after SIGINT: SIGQUIT\n", FAST_STOP_MS);
		kill(ppid, SIGQUIT);
		if (!reap_within(ppid, &st, QUIT_STOP_MS)) {
			kill(ppid, SIGKILL);
			waitpid(ppid, &st, 0);
		}
	}
	bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	if (!clean)
		dump_tail("postgres log", plog);
	rm_tree(pg->dir);
	_exit(clean ? SUP_CLEAN : SUP_UNCLEAN);
}

/* ---- the test process's side ---- */

#define INITDB_KEY "v1 -U herald -A trust -E UTF8 --locale=C --wal-segsize=1"

/* Where this server build's initdb result for this user is cached:
 * $PGTEST_CACHE/initdb-<hash> (CTest sets PGTEST_CACHE to a directory of the
 * build tree), or "" (no cache) when PGTEST_CACHE is unset. The hash covers
 * the postgres binary (path, size, mtime, inode: an upgrade makes a new
 * one), the user it runs as and initdb's options. */
static void template_path(const struct pgtest *pg, const struct runas *ra, char *buf, size_t len)
{
	buf[0] = 0;
	const char *cache = getenv("PGTEST_CACHE");
	char bin[300], key[600];
	struct stat st;
	snprintf(bin, sizeof bin, "%s/postgres", pg->bindir);
	if (!cache || !*cache || strlen(cache) > 200 || stat(bin, &st) != 0)
		return;
	snprintf(key, sizeof key, "%s|%lld|%lld|%llu|%u|" INITDB_KEY, bin, (long long)st.st_size,
	         (long long)st.st_mtime, (unsigned long long)st.st_ino,
	         (unsigned)(ra->drop ? ra->uid : geteuid()));
	unsigned long long h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	snprintf(buf, len, "%s/initdb-%016llx", cache, h);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int port = -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

void pgtest_conninfo(const struct pgtest *pg, const char *dbname, char *buf, size_t len)
{
	snprintf(buf, len, "host=%s port=%d dbname=%s user=%s", pg->dir, pg->port,
	         dbname ? dbname : pg->dbname, pg->user);
}

static const char *exit_text(int st)
{
	static char buf[64];
	if (WIFSIGNALED(st))
		snprintf(buf, sizeof buf, "killed by signal %d", WTERMSIG(st));
	else if (WIFEXITED(st))
		switch (WEXITSTATUS(st)) {
		case SUP_SETUP:
			return "supervisor setup failed";
		case SUP_INITDB:
			return "initdb failed";
		case SUP_EXITED:
			return "postgres exited by itself";
		case SUP_UNCLEAN:
			return "postgres did not shut down cleanly";
		default:
			snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
		}
	return buf;
}

/* One try: 0 ready, 1 worth another try (postgres died: port taken), -1 error. */
static int start_once(struct pgtest *pg, const struct runas *ra, const char *tmpl, double deadline)
{
	/* The socket path must fit sun_path (108 bytes), and the server's user
	 * must reach the directory: $TMPDIR only when it is short and ours. */
	const char *tmp = getenv("TMPDIR");
	if (ra->drop || !tmp || !*tmp || strlen(tmp) > 48)
		tmp = "/tmp";
	snprintf(pg->dir, sizeof pg->dir, "%s/herald-pg.XXXXXX", tmp);
	if (!mkdtemp(pg->dir)) {
		seterr(pg, "mkdtemp %s: %s", pg->dir, strerror(errno));
		return -1;
	}
	if ((ra->drop && chown(pg->dir, ra->uid, ra->gid) != 0) || chmod(pg->dir, 0755) != 0) {
		seterr(pg, "chown/chmod %s for user %s: %s", pg->dir, ra->name, strerror(errno));
		rmdir(pg->dir);
		return -1;
	}
	pg->port = free_port();
	int fds[2];
	if (pg->port <= 0 || pipe2(fds, O_CLOEXEC) != 0) {
		seterr(pg, "free port / pipe: %s", strerror(errno));
		rmdir(pg->dir);
		return -1;
	}
	pgtest_conninfo(pg, NULL, pg->conninfo, sizeof pg->conninfo);
	snprintf(pg->conninfo_tcp, sizeof pg->conninfo_tcp,
	         "host=127.0.0.1 port=%d dbname=%s user=%s", pg->port, pg->dbname, pg->user);

	fflush(NULL); /* no stdio buffer written twice */
	pid_t sup = fork();
	if (sup < 0) {
		seterr(pg, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		rmdir(pg->dir);
		return -1;
	}
	if (sup == 0) {
		close(fds[1]);
		supervise(pg, ra, tmpl, fds[0]);
	}
	close(fds[0]);
	pg->supervisor = sup;
	pg->lifeline = fds[1];

	/* Ready when it accepts a connection on the socket: polled, no fixed
	 * sleep. The supervisor exiting first means initdb or postgres failed. */
	char ping[400];
	pgtest_conninfo(pg, "postgres", ping, sizeof ping); /* herald is not there yet */
	strncat(ping, " connect_timeout=5", sizeof ping - strlen(ping) - 1);
	for (;;) {
		int st;
		if (waitpid(sup, &st, WNOHANG) == sup) {
			pg->supervisor = 0;
			close(pg->lifeline);
			pg->lifeline = -1;
			seterr(pg, "PostgreSQL did not start (%s; output above)", exit_text(st));
			return WIFEXITED(st) && WEXITSTATUS(st) == SUP_EXITED ? 1 : -1;
		}
		PGPing r = PQping(ping);
		if (r == PQPING_OK)
			return 0;
		if (r == PQPING_NO_ATTEMPT || now_ms() > deadline) {
			pgtest_stop(pg);
			seterr(pg,
			       "PostgreSQL (%s, port %d) not accepting connections within %d ms",
			       pg->dir, pg->port, START_TIMEOUT_MS);
			return -1;
		}
		sleep_ms(10);
	}
}

int pgtest_start(struct pgtest *pg)
{
	return pgtest_start_with(pg, false, NULL);
}

int pgtest_start_with(struct pgtest *pg, bool durable, const char *const *settings)
{
	double t0 = now_ms();
	memset(pg, 0, sizeof *pg);
	pg->lifeline = -1;
	pg->durable = durable;
	for (int i = 0; settings && i < 8 && settings[i]; i++)
		pg->settings[i] = settings[i];
	snprintf(pg->dbname, sizeof pg->dbname, "herald");
	snprintf(pg->user, sizeof pg->user, "herald");
	struct runas ra;
	if (find_bindir(pg) != 0 || pick_user(pg, &ra) != 0)
		return -1;
	char tmpl[300];
	template_path(pg, &ra, tmpl, sizeof tmpl);
	if (durable)
		tmpl[0] = 0; /* the cache holds the tests' initdb, made with other options */
	for (int attempt = 1;; attempt++) {
		int r = start_once(pg, &ra, tmpl, t0 + START_TIMEOUT_MS);
		if (r == 0)
			break;
		if (r < 0 || attempt == START_ATTEMPTS)
			return -1;
	}
	if (pgtest_createdb(pg, pg->dbname) != 0) {
		char why[sizeof pg->err];
		memcpy(why, pg->err, sizeof why);
		pgtest_stop(pg);
		memcpy(pg->err, why, sizeof why);
		return -1;
	}
	char pidfile[200];
	snprintf(pidfile, sizeof pidfile, "%s/data/postmaster.pid", pg->dir);
	FILE *f = fopen(pidfile, "r");
	long pid = 0;
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	pg->server_pid = (pid_t)pid;
	pg->start_ms = now_ms() - t0;
	return 0;
}

int pgtest_stop(struct pgtest *pg)
{
	if (pg->supervisor <= 0)
		return 0;
	close(pg->lifeline); /* EOF: the supervisor stops the server and cleans up */
	pg->lifeline = -1;
	int st = 0;
	pid_t r;
	while ((r = waitpid(pg->supervisor, &st, 0)) < 0 && errno == EINTR)
		;
	pg->supervisor = 0;
	if (r < 0) {
		seterr(pg, "waitpid supervisor: %s", strerror(errno));
		return -1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != SUP_CLEAN) {
		seterr(pg, "PostgreSQL stop: %s", exit_text(st));
		return -1;
	}
	return 0;
}

PGconn *pgtest_connect(struct pgtest *pg, const char *dbname)
{
	char ci[400];
	pgtest_conninfo(pg, dbname, ci, sizeof ci);
	PGconn *c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		seterr(pg, "connect %s: %s", ci, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

int pgtest_createdb(struct pgtest *pg, const char *name)
{
	PGconn *c = pgtest_connect(pg, "postgres");
	if (!c)
		return -1;
	char *id = PQescapeIdentifier(c, name, strlen(name));
	char sql[200];
	/* FILE_COPY (15+): with fsync off, a copy of template1's files is about
	 * twice as fast as 15's default of writing them through the WAL. */
	snprintf(sql, sizeof sql, "CREATE DATABASE %s%s", id ? id : "\"\"",
	         PQserverVersion(c) >= 150000 ? " STRATEGY = FILE_COPY" : "");
	PQfreemem(id);
	PGresult *res = PQexec(c, sql);
	int rc = 0;
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		seterr(pg, "%s: %s", sql, PQerrorMessage(c));
		rc = -1;
	}
	PQclear(res);
	PQfinish(c);
	return rc;
}

/* Tells the supervisor c ('D' or 'U') and waits until a ping of the server
 * answers `want` (NO_RESPONSE once down, OK once up), up to the start
 * timeout. */
static int server_cmd(struct pgtest *pg, char c, PGPing want)
{
	if (pg->supervisor <= 0 || pg->lifeline < 0) {
		seterr(pg, "no server");
		return -1;
	}
	if (write(pg->lifeline, &c, 1) != 1) {
		seterr(pg, "lifeline: %s", strerror(errno));
		return -1;
	}
	char ping[400];
	pgtest_conninfo(pg, "postgres", ping, sizeof ping);
	strncat(ping, " connect_timeout=5", sizeof ping - strlen(ping) - 1);
	double deadline = now_ms() + START_TIMEOUT_MS;
	while (PQping(ping) != want) {
		if (now_ms() > deadline) {
			seterr(pg, "PostgreSQL not %s within %d ms", c == 'D' ? "down" : "up",
			       START_TIMEOUT_MS);
			return -1;
		}
		sleep_ms(10);
	}
	return 0;
}

int pgtest_server_down(struct pgtest *pg)
{
	return server_cmd(pg, 'D', PQPING_NO_RESPONSE);
}

int pgtest_server_up(struct pgtest *pg)
{
	if (server_cmd(pg, 'U', PQPING_OK) != 0)
		return -1;
	char pidfile[200];
	snprintf(pidfile, sizeof pidfile, "%s/data/postmaster.pid", pg->dir);
	FILE *f = fopen(pidfile, "r");
	long pid = 0;
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	pg->server_pid = (pid_t)pid;
	return 0;
}
